/// What is wrong with a message that is JSON but not the QMP its place calls for: a greeting
/// without a version, a backend without a size. ``QMPConnection`` throws it as
/// ``QMPError/protocolViolation(path:detail:)`` with the socket's path.
struct QMPReplyError: Error {
    var detail: String
    init(_ detail: String) { self.detail = detail }
}

/// Reads the members of one object of a reply by name and JSON type, naming what it reads
/// (`a query-memdev backend`) in the error for a member that is missing or of another type.
///
/// An optional member (QAPI's `*name`) may be absent; present, it must have its type.
/// Members the reader is not asked for are ignored: a newer QEMU adds some.
struct QMPReplyReader {
    let members: [String: QMPValue]
    /// What the object is, for errors: `a query-memdev backend`.
    let what: String

    init(_ value: QMPValue, _ what: String) throws(QMPReplyError) {
        guard let members = value.objectValue else { throw QMPReplyError("\(what) is not an object: \(value)") }
        self.members = members
        self.what = what
    }

    func required<T>(_ key: String, _ type: String, _ extract: (QMPValue) -> T?) throws(QMPReplyError) -> T {
        guard let value = members[key] else { throw QMPReplyError("\(what) has no \"\(key)\"") }
        return try typed(value, key, type, extract)
    }

    func optional<T>(_ key: String, _ type: String, _ extract: (QMPValue) -> T?) throws(QMPReplyError) -> T? {
        guard let value = members[key] else { return nil }
        return try typed(value, key, type, extract)
    }

    private func typed<T>(_ value: QMPValue, _ key: String, _ type: String, _ extract: (QMPValue) -> T?) throws(QMPReplyError) -> T {
        guard let typed = extract(value) else { throw QMPReplyError("\"\(key)\" of \(what) is not \(type): \(value)") }
        return typed
    }

    func string(_ key: String) throws(QMPReplyError) -> String { try required(key, "a string", \.stringValue) }
    func optionalString(_ key: String) throws(QMPReplyError) -> String? { try optional(key, "a string", \.stringValue) }
    func bool(_ key: String) throws(QMPReplyError) -> Bool { try required(key, "a Boolean", \.boolValue) }
    func optionalBool(_ key: String) throws(QMPReplyError) -> Bool? { try optional(key, "a Boolean", \.boolValue) }
    func int(_ key: String) throws(QMPReplyError) -> Int64 { try required(key, "an integer", \.int64Value) }
    func optionalInt(_ key: String) throws(QMPReplyError) -> Int64? { try optional(key, "an integer", \.int64Value) }
    func uint(_ key: String) throws(QMPReplyError) -> UInt64 { try required(key, "a non-negative integer", \.uint64Value) }
    func array(_ key: String) throws(QMPReplyError) -> [QMPValue] { try required(key, "an array", \.arrayValue) }
    func optionalArray(_ key: String) throws(QMPReplyError) -> [QMPValue]? { try optional(key, "an array", \.arrayValue) }

    /// The member `key`, an object, read as `what`.
    func object(_ key: String, _ what: String) throws(QMPReplyError) -> QMPReplyReader {
        try QMPReplyReader(try required(key, "an object", { $0.objectValue == nil ? nil : $0 }), what)
    }

    /// The member `key`, an array of objects, each to be read as `what`.
    func objects(_ key: String, _ what: String) throws(QMPReplyError) -> [QMPReplyReader] {
        try array(key).map { element throws(QMPReplyError) in try QMPReplyReader(element, what) }
    }

    /// The member `key` if present, an object, read as `what`.
    func optionalObject(_ key: String, _ what: String) throws(QMPReplyError) -> QMPReplyReader? {
        guard let value = try optional(key, "an object", { $0.objectValue == nil ? nil : $0 }) else { return nil }
        return try QMPReplyReader(value, what)
    }
}

/// The elements of `reply`, an array of objects, each to be read as `what`.
func replyObjects(_ reply: QMPValue, _ what: String) throws(QMPReplyError) -> [QMPReplyReader] {
    guard let elements = reply.arrayValue else { throw QMPReplyError("the reply is not an array of \(what)s: \(reply)") }
    return try elements.map { element throws(QMPReplyError) in try QMPReplyReader(element, what) }
}

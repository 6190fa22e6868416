import Yams

/// One YAML mapping of a web configuration file, read key by key: its keys are plain strings,
/// each at most once, and every key is either read or reported. Errors carry the file and the
/// line of the offending key or value (Yams counts both from 1).
///
/// Only mappings and scalars are ever descended into, one level under the top: whatever
/// aliases a file holds, reading it costs no more than its text.
struct YAMLMapping {
    /// How the file is named in errors.
    let file: String
    /// The keys above this mapping, for names in errors (`tls_server_config`); empty at the top.
    let path: [String]
    /// The entries in file order.
    let entries: [(key: String, keyNode: Node, value: Node)]

    /// Checks that `node` is a mapping of string keys, none repeated; `what` names it in errors.
    init(_ node: Node, file: String, path: [String]) throws(ConfigError) {
        self.file = file
        self.path = path
        guard case .mapping(let mapping) = node else {
            let what = path.isEmpty ? "the file" : path.joined(separator: ".")
            throw ConfigError(
                file: file, line: node.mark?.line, column: node.mark?.column,
                message: "\(what) must be a mapping of keys to values, not \(Self.describe(node))")
        }
        var entries: [(key: String, keyNode: Node, value: Node)] = []
        var seen: Set<String> = []
        for (keyNode, value) in mapping {
            guard case .scalar(let scalar) = keyNode else {
                throw ConfigError(
                    file: file, line: keyNode.mark?.line, column: keyNode.mark?.column,
                    message: "a key of \(path.isEmpty ? "the file" : path.joined(separator: ".")) is \(Self.describe(keyNode)), not a name")
            }
            guard seen.insert(scalar.string).inserted else {
                throw ConfigError(
                    file: file, line: keyNode.mark?.line, column: keyNode.mark?.column,
                    message: "\(Self.name(path + [scalar.string])) is set twice")
            }
            entries.append((scalar.string, keyNode, value))
        }
        self.entries = entries
    }

    /// The dotted name of `key` here, as exporter-toolkit's documentation writes it.
    func name(_ key: String) -> String { Self.name(path + [key]) }

    static func name(_ path: [String]) -> String { path.joined(separator: ".") }

    /// The value of `key`; nil when absent or YAML's null (`key:` with nothing after it).
    func value(_ key: String) -> Node? {
        guard let entry = entries.first(where: { $0.key == key }), !Self.isNull(entry.value) else { return nil }
        return entry.value
    }

    /// The string of a scalar value; an error when `key` holds a mapping or a sequence.
    func string(_ key: String) throws(ConfigError) -> String? {
        guard let node = value(key) else { return nil }
        guard case .scalar(let scalar) = node else {
            throw error(at: node, "\(name(key)) must be a single value, not \(Self.describe(node))")
        }
        return scalar.string
    }

    /// One of `Choice`'s raw values; an error naming the choices (and `refusals`' reason for a
    /// value exporter-toolkit knows and samepaged does not take) otherwise.
    func choice<Choice: RawRepresentable & CaseIterable>(
        _ key: String, refusing refusals: [String: String] = [:]
    ) throws(ConfigError) -> Choice? where Choice.RawValue == String {
        guard let text = try string(key) else { return nil }
        if let choice = Choice(rawValue: text) { return choice }
        let node = value(key)!
        if let reason = refusals[text] {
            throw error(at: node, "\(name(key)): \(text) \(reason)")
        }
        let expected = Choice.allCases.map(\.rawValue).joined(separator: ", ")
        throw error(at: node, "\(name(key)) = \(Self.quoted(text)) is not one of \(expected)")
    }

    /// Throws for the first key, in file order, that is neither in `known` nor `refused`; a
    /// refused key (one of exporter-toolkit's that samepaged does not implement) is reported
    /// with its reason. A misspelt key must never be skipped: it could be the one that asks
    /// for authentication.
    func finish(known: Set<String>, refused: [String: String] = [:]) throws(ConfigError) {
        for entry in entries where !known.contains(entry.key) {
            if let reason = refused[entry.key] {
                throw error(at: entry.keyNode, "\(name(entry.key)) is not supported: \(reason)")
            }
            let expected = known.sorted().joined(separator: ", ")
            throw error(
                at: entry.keyNode,
                "unknown key \(Self.quoted(name(entry.key))) (expected \(expected.isEmpty ? "none" : expected))")
        }
    }

    func error(at node: Node, _ message: String) -> ConfigError {
        ConfigError(file: file, line: node.mark?.line, column: node.mark?.column, message: message)
    }

    static func isNull(_ node: Node) -> Bool {
        guard case .scalar(let scalar) = node, scalar.style == .plain else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    static func describe(_ node: Node) -> String {
        switch node {
        case .scalar: "a single value"
        case .mapping: "a mapping"
        case .sequence: "a list"
        }
    }

    /// `text` in double quotes, with anything unprintable escaped.
    static func quoted(_ text: String) -> String {
        "\"" + text.unicodeScalars.map { scalar in
            switch scalar {
            case "\"": "\\\""
            case "\\": "\\\\"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F: "\\u{\(String(scalar.value, radix: 16))}"
            default: String(scalar)
            }
        }.joined() + "\""
    }
}

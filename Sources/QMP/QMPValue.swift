/// A JSON value as QMP sends and takes it: the one value type of this module's wire.
///
/// QMP speaks JSON (RFC 8259) with two habits worth a type of their own. Its integers are
/// QAPI `int`/`size`/`uint64`: exact, and up to 2^64 - 1 (a `uint64` property read with
/// `qom-get` can be `18446744073709551615`), which a `Double` would round, so integers stay
/// integers here: ``int(_:)`` for every value that fits an `Int64`, ``uint(_:)`` only for
/// those above `Int64.max`, ``double(_:)`` only for a number written with a fraction or an
/// exponent. And its objects are unordered (QEMU reads members by name), so ``object(_:)``
/// is a dictionary; ``serialized()`` writes members in sorted key order, so that the same
/// value is always the same bytes.
///
/// Unlike `JSONSerialization`'s `Any`, a `QMPValue` is `Sendable`, `Hashable` and switched
/// over exhaustively; unlike a `Codable` model it takes whatever QEMU sends, including the
/// members a newer QEMU adds, so that the typed replies (``QMPRunState``,
/// ``QMPMemoryBackend``, …) read the members they know and ignore the rest.
///
/// Literals build arguments: `["path": "/machine/peripheral", "recursive": false]`.
public enum QMPValue: Sendable, Hashable {
    case object([String: QMPValue])
    case array([QMPValue])
    case string(String)
    /// An integer that fits an `Int64`.
    case int(Int64)
    /// An integer above `Int64.max` (QAPI's `uint64`, `size`); never one that fits ``int(_:)``.
    case uint(UInt64)
    /// A number with a fraction or an exponent.
    case double(Double)
    case bool(Bool)
    case null
}

// MARK: - Reading

extension QMPValue {
    /// The members, if this is an object.
    public var objectValue: [String: QMPValue]? {
        if case .object(let members) = self { return members }
        return nil
    }

    /// The elements, if this is an array.
    public var arrayValue: [QMPValue]? {
        if case .array(let elements) = self { return elements }
        return nil
    }

    /// The text, if this is a string.
    public var stringValue: String? {
        if case .string(let text) = self { return text }
        return nil
    }

    /// The truth value, if this is a Boolean.
    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    /// The integer, if this is one that fits an `Int64`.
    public var int64Value: Int64? {
        if case .int(let value) = self { return value }
        return nil
    }

    /// The integer, if this is a non-negative one (``int(_:)`` or ``uint(_:)``).
    public var uint64Value: UInt64? {
        switch self {
        case .int(let value) where value >= 0: UInt64(value)
        case .uint(let value): value
        default: nil
        }
    }

    /// The number as a `Double`, if this is any number (an integer above 2^53 rounded).
    public var doubleValue: Double? {
        switch self {
        case .int(let value): Double(value)
        case .uint(let value): Double(value)
        case .double(let value): value
        default: nil
        }
    }

    /// Whether this is JSON's `null`.
    public var isNull: Bool { self == .null }

    /// The member `key` of an object; nil if this is not an object or has no such member.
    public subscript(key: String) -> QMPValue? {
        objectValue?[key]
    }
}

// MARK: - Literals

extension QMPValue: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
}

extension QMPValue: ExpressibleByIntegerLiteral {
    public init(integerLiteral value: Int64) { self = .int(value) }
}

extension QMPValue: ExpressibleByFloatLiteral {
    public init(floatLiteral value: Double) { self = .double(value) }
}

extension QMPValue: ExpressibleByBooleanLiteral {
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

extension QMPValue: ExpressibleByNilLiteral {
    public init(nilLiteral: ()) { self = .null }
}

extension QMPValue: ExpressibleByArrayLiteral {
    public init(arrayLiteral elements: QMPValue...) { self = .array(elements) }
}

extension QMPValue: ExpressibleByDictionaryLiteral {
    /// An object; a key given twice keeps its last value.
    public init(dictionaryLiteral elements: (String, QMPValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}

extension QMPValue: CustomStringConvertible {
    /// The value as compact JSON text (``serialized()``).
    public var description: String { String(decoding: serialized(), as: UTF8.self) }
}

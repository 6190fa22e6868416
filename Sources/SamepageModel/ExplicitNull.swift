/// An optional property that is always on the wire: `null` when nil, rather than left out.
///
/// A synthesized `Codable` conformance leaves out a nil optional; the wire objects of
/// `list`, `dominfo` and `policy.show` write every key, so that a reader sees what is not
/// known. Reading, a missing key is nil, as a `null` is.
@propertyWrapper
public struct ExplicitNull<Value: Codable & Sendable>: Codable, Sendable {
    public var wrappedValue: Value?

    public init(wrappedValue: Value?) { self.wrappedValue = wrappedValue }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(wrappedValue)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        wrappedValue = container.decodeNil() ? nil : try container.decode(Value.self)
    }
}

extension ExplicitNull: Equatable where Value: Equatable {}

extension KeyedDecodingContainer {
    /// A missing key reads as nil: what a synthesized `init(from:)` calls for an
    /// ``ExplicitNull`` property.
    func decode<Value>(_ type: ExplicitNull<Value>.Type, forKey key: Key) throws -> ExplicitNull<Value> {
        ExplicitNull(wrappedValue: try decodeIfPresent(Value.self, forKey: key))
    }
}

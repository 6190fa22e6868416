extension KeyedDecodingContainer {
    /// The value at `key`, or `fallback` when the key is missing or null.
    ///
    /// How the model's types read objects written by a daemon that knows fewer fields: each
    /// passes its own default (a fresh value's property), so defaults are stated once, on the
    /// type, and not again in its decoder.
    func decode<T: Decodable>(_ key: Key, or fallback: T) throws -> T {
        try decodeIfPresent(T.self, forKey: key) ?? fallback
    }
}

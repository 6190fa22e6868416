extension Duration {
    /// The duration in seconds, as a `Double`: for APIs that take seconds (`DispatchTime`
    /// arithmetic, rates). Precise to a `Double`'s 15 to 16 digits.
    public var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    /// The duration in milliseconds, as a `Double`, for reports of pause lengths.
    public var inMilliseconds: Double {
        Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15
    }
}

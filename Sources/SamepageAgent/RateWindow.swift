import SamepageCore

/// The rate of a growing count over a sliding window of time: pages scanned per second.
///
/// Samples older than the window are dropped, except the newest of them, which anchors the
/// window's start; so the rate always spans about `span` once that much time has passed.
public struct RateWindow: Sendable {
    public let span: Duration
    private var samples: [(at: ContinuousClock.Instant, count: Int)] = []

    public init(span: Duration) {
        self.span = span
    }

    /// Adds the count's value at `instant` (instants must not go backwards). A count that went
    /// down (a reset) starts the window afresh.
    public mutating func add(_ count: Int, at instant: ContinuousClock.Instant) {
        if let last = samples.last, count < last.count || instant < last.at { samples.removeAll() }
        samples.append((instant, count))
        // Keep one sample at or before the window's start.
        while samples.count > 2 && samples[1].at <= instant - span { samples.removeFirst() }
    }

    /// Whether two samples lie at least 100 ms apart: a rate of 0 is then a measured one.
    public var spansTime: Bool {
        guard let first = samples.first, let last = samples.last else { return false }
        return last.at - first.at >= .milliseconds(100)
    }

    /// Counted per second over the window; 0 until two samples at least 100 ms apart.
    public var perSecond: Double {
        guard let first = samples.first, let last = samples.last else { return 0 }
        let elapsed = last.at - first.at
        guard elapsed >= .milliseconds(100) else { return 0 }
        return Double(last.count - first.count) / elapsed.inSeconds
    }
}

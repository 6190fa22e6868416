import Foundation
import SamepageModel

/// A histogram of pause lengths (``ReclaimStatus/pauseHistogram`` and its guest-seen twin)
/// and the percentiles it can tell.
///
/// A histogram keeps counts per bucket, not the lengths themselves, so a percentile is known
/// only up to its bucket: ``upperBound(percentile:)`` is the upper bound of the bucket that
/// holds it. "p90 ≤ 10 ms" means at least 90% of the pauses took 10 ms or less; the pauses
/// themselves may have been much shorter. Prometheus's `histogram_quantile` interpolates
/// inside the bucket instead; this says only what the counts prove.
public struct PauseHistogram: Sendable, Equatable {
    /// Upper bounds of the buckets in milliseconds, ascending; the last may be infinite.
    public var boundsMs: [Double]
    /// Pauses in each bucket (not cumulative), one count per bound.
    public var counts: [Int]

    /// A histogram over ``ReclaimStatus/histogramBoundsMs``.
    public init(counts: [Int], boundsMs: [Double] = ReclaimStatus.histogramBoundsMs) {
        precondition(counts.count == boundsMs.count, "a count for each bucket")
        self.boundsMs = boundsMs
        self.counts = counts
    }

    /// Pauses counted.
    public var total: Int { counts.reduce(0, +) }

    /// The upper bound, in milliseconds, of the bucket that holds the `percentile`-th pause
    /// (0 < percentile ≤ 100): the first bucket whose cumulative count reaches
    /// ⌈percentile × total / 100⌉. Infinite when that is the last, unbounded bucket; nil
    /// when nothing was counted.
    public func upperBound(percentile: Double) -> Double? {
        precondition(percentile > 0 && percentile <= 100, "a percentile is in (0, 100]")
        let total = total
        guard total > 0 else { return nil }
        let rank = Int((percentile * Double(total) / 100).rounded(.up))
        var seen = 0
        for (bound, count) in zip(boundsMs, counts) {
            seen += count
            if seen >= rank { return bound }
        }
        return boundsMs.last
    }

    /// The percentiles shown, p50, p90 and p99, in words: "p50 ≤ 5 ms, p90 ≤ 10 ms, p99 ≤ 20 ms";
    /// a percentile in the unbounded bucket is "> 100 ms" (the last finite bound).
    /// "none" when nothing was counted.
    public var percentilesText: String {
        guard total > 0 else { return "none" }
        return [50.0, 90, 99].map { p in
            let bound = upperBound(percentile: p)!
            let text = bound.isInfinite
                ? "> \(Self.number(boundsMs.last { $0.isFinite } ?? 0)) ms" : "≤ \(Self.number(bound)) ms"
            return "p\(Int(p)) \(text)"
        }.joined(separator: ", ")
    }

    /// The buckets in words, "≤1:0 ≤2:0 ≤5:1 … +Inf:0", for the histogram itself.
    public var bucketsText: String {
        zip(boundsMs, counts).map { "\($0.isInfinite ? "+Inf" : "≤" + Self.number($0)):\($1)" }.joined(separator: " ")
    }

    /// A bound without a needless ".0": 1, 2.5.
    static func number(_ value: Double) -> String { String(format: "%g", value) }
}

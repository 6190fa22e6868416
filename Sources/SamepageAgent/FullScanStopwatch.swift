/// The wall and CPU time of the full scan under way, as the scan-time advisor needs them:
/// what a full scan costs while the scanner works, not how long the agent waited.
///
/// The agent's loop reads both clocks after every batch (``batchEnded(at:cpuTime:pagesScanned:fullScansCompleted:)``).
/// The span since the previous batch (its sleep, requests, reclaim, then this batch) counts
/// towards the scan when this batch did scanning work: it read pages or completed a full
/// scan. A batch that did nothing (scanning stopped, no guest, nothing resident) leaves its
/// span out, so an hour of `run stop` is not an hour-long scan. A full scan that read no
/// page at all (nothing resident anywhere) is no measurement either: it is dropped.
///
/// A value type over the readings it is given: no clock of its own.
struct FullScanStopwatch: Sendable {
    /// A completed full scan's cost.
    struct Measurement: Sendable, Equatable {
        /// Wall time counted towards the scan.
        var wallTime: Duration
        /// The thread's CPU time over the same spans.
        var cpuTime: Duration
        /// Pages read in it.
        var pages: Int
    }

    private var current = Measurement(wallTime: .zero, cpuTime: .zero, pages: 0)
    /// The readings at the end of the previous batch; nil before the first.
    private var previous: (wall: ContinuousClock.Instant, cpu: Duration)?

    /// Counts a batch that ended when the clocks read `wall` and `cpuTime`, and returns the
    /// full scan it completed, if it completed one that read pages. (The agent ends a batch
    /// at the end of a full scan, so the span is that scan's alone.)
    mutating func batchEnded(
        at wall: ContinuousClock.Instant, cpuTime: Duration, pagesScanned: Int, fullScansCompleted: Int
    ) -> Measurement? {
        defer { previous = (wall, cpuTime) }
        let worked = pagesScanned > 0 || fullScansCompleted > 0
        if worked, let previous {
            current.wallTime += wall - previous.wall
            current.cpuTime += max(.zero, cpuTime - previous.cpu)
        }
        current.pages += pagesScanned
        guard fullScansCompleted > 0 else { return nil }
        defer { current = Measurement(wallTime: .zero, cpuTime: .zero, pages: 0) }
        return current.pages > 0 ? current : nil
    }

    /// Forgets the scan under way (the engine starts its full scan over, as after `unmerge`).
    /// The readings are kept: the next batch's span still counts.
    mutating func discardScan() {
        current = Measurement(wallTime: .zero, cpuTime: .zero, pages: 0)
    }
}

@testable import SamepageAgent
import Testing

// The readings are made up; each expected figure is the sum of the spans that count, added
// up by hand next to it.

private let t0 = ContinuousClock.now

@Suite("The full scan's stopwatch")
struct FullScanStopwatchTests {
    @Test("Spans of batches that scanned add up; the scan is handed out when it completes")
    func countsWorkingSpans() {
        var watch = FullScanStopwatch()
        // The first reading only starts the clocks: nothing before it is known.
        #expect(watch.batchEnded(at: t0, cpuTime: .seconds(5), pagesScanned: 100, fullScansCompleted: 0) == nil)
        // +2 s wall, +0.5 s CPU, 300 pages.
        #expect(watch.batchEnded(
            at: t0 + .seconds(2), cpuTime: .milliseconds(5500), pagesScanned: 300, fullScansCompleted: 0) == nil)
        // +3 s wall, +1 s CPU, 200 pages, and the full scan ends.
        let scan = watch.batchEnded(at: t0 + .seconds(5), cpuTime: .milliseconds(6500), pagesScanned: 200, fullScansCompleted: 1)
        // Wall 2 + 3 = 5 s; CPU 0.5 + 1 = 1.5 s; pages 100 + 300 + 200 = 600.
        #expect(scan == .init(wallTime: .seconds(5), cpuTime: .milliseconds(1500), pages: 600))

        // The next scan starts from zero.
        let next = watch.batchEnded(at: t0 + .seconds(6), cpuTime: .milliseconds(6700), pagesScanned: 50, fullScansCompleted: 1)
        #expect(next == .init(wallTime: .seconds(1), cpuTime: .milliseconds(200), pages: 50))
    }

    @Test("Idle batches (stopped, no guests) leave their span out")
    func idleSpansDoNotCount() {
        var watch = FullScanStopwatch()
        _ = watch.batchEnded(at: t0, cpuTime: .zero, pagesScanned: 0, fullScansCompleted: 0)
        // +1 s working.
        _ = watch.batchEnded(at: t0 + .seconds(1), cpuTime: .milliseconds(100), pagesScanned: 10, fullScansCompleted: 0)
        // An hour of `run stop`: batches that do nothing.
        _ = watch.batchEnded(at: t0 + .seconds(1800), cpuTime: .milliseconds(150), pagesScanned: 0, fullScansCompleted: 0)
        _ = watch.batchEnded(at: t0 + .seconds(3601), cpuTime: .milliseconds(200), pagesScanned: 0, fullScansCompleted: 0)
        // Scanning again: +2 s, +0.3 s CPU, and the scan ends.
        let scan = watch.batchEnded(at: t0 + .seconds(3603), cpuTime: .milliseconds(500), pagesScanned: 20, fullScansCompleted: 1)
        // Wall 1 + 2 = 3 s; CPU 0.1 + 0.3 = 0.4 s; pages 10 + 20.
        #expect(scan == .init(wallTime: .seconds(3), cpuTime: .milliseconds(400), pages: 30))
    }

    @Test("A full scan that read nothing is no measurement; an unmerge drops the scan under way")
    func emptyAndDiscardedScans() {
        var watch = FullScanStopwatch()
        _ = watch.batchEnded(at: t0, cpuTime: .zero, pagesScanned: 0, fullScansCompleted: 0)
        // Nothing resident anywhere: a full scan of no page.
        #expect(watch.batchEnded(at: t0 + .seconds(1), cpuTime: .milliseconds(1), pagesScanned: 0, fullScansCompleted: 1) == nil)
        // It does not leak into the next one: +1 s, 5 pages.
        let next = watch.batchEnded(at: t0 + .seconds(2), cpuTime: .milliseconds(11), pagesScanned: 5, fullScansCompleted: 1)
        #expect(next == .init(wallTime: .seconds(1), cpuTime: .milliseconds(10), pages: 5))

        // +4 s of a scan, then unmerge: what it measured goes.
        _ = watch.batchEnded(at: t0 + .seconds(6), cpuTime: .milliseconds(411), pagesScanned: 40, fullScansCompleted: 0)
        watch.discardScan()
        // +1 s after it, and the scan ends: only that second counts.
        let after = watch.batchEnded(at: t0 + .seconds(7), cpuTime: .milliseconds(511), pagesScanned: 8, fullScansCompleted: 1)
        #expect(after == .init(wallTime: .seconds(1), cpuTime: .milliseconds(100), pages: 8))
    }
}

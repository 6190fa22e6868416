@testable import SamepageAgent
import Testing

// Every expected value here is worked out by hand from the rules in ReclaimState's doc
// comments (the arithmetic is written next to each), never by calling the code under test.

private let t0 = ContinuousClock.now

private func expectClose(_ value: Double, _ expected: Double, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(abs(value - expected) < 1e-9, "\(value) is not \(expected)", sourceLocation: sourceLocation)
}

@Suite("Reclaim state: pause sizing and spacing")
struct ReclaimStateTests {
    @Test("Batch size: 70% of the budget less the fixed cost, over the per-page cost, at least 64")
    func batchSize() {
        var state = ReclaimState()  // fixed 5000 µs, 5 µs per page
        state.pausesMeasured = 1
        #expect(state.batchSize(maxPauseMs: 50) == 6000)  // 50 × 700 = 35000; − 5000 = 30000; / 5
        #expect(state.batchSize(maxPauseMs: 8) == 120)  // 5600 − 5000 = 600; / 5
        #expect(state.batchSize(maxPauseMs: 7) == 64)  // 4900 − 5000 < 0: room 0, the floor
        #expect(state.batchSize(maxPauseMs: 5) == 64)
        state.pausePerPageMicros = 7
        #expect(state.batchSize(maxPauseMs: 20) == 1285)  // 14000 − 5000 = 9000; / 7 = 1285.7
        state.pausePerPageMicros = 0.1  // taken as 0.5
        #expect(state.batchSize(maxPauseMs: 10) == 4000)  // 7000 − 5000 = 2000; / 0.5
        state.pauseFixedMicros = 2000
        state.pausePerPageMicros = 4
        #expect(state.batchSize(maxPauseMs: 100) == 17_000)  // 70000 − 2000 = 68000; / 4
    }

    @Test("Costs: a fifth of the way to each sample (30% per page), outliers capped at twice the estimate")
    func learnCosts() {
        var state = ReclaimState()  // fixed 5000, per page 5, resume 3000 µs
        state.pausesMeasured = 1  // past the probe: estimates move, not replaced
        // Suspend 4 ms, verify and punch 10 ms over 1000 pages, resume 2 ms.
        let suspended = t0 + .milliseconds(4), punched = t0 + .milliseconds(14), end = t0 + .milliseconds(16)
        state.learnCosts(start: t0, suspended: suspended, punched: punched, end: end, pagesExamined: 1000)
        expectClose(state.resumeMicros, 2800)  // 0.8 × 3000 + 0.2 × 2000
        expectClose(state.pauseFixedMicros, 5200)  // 0.8 × 5000 + 0.2 × (4000 + 2000)
        expectClose(state.pausePerPageMicros, 6.5)  // 0.7 × 5 + 0.3 × (10000 / 1000)
        // The same pause again: each estimate moves on from where it is.
        state.learnCosts(start: t0, suspended: suspended, punched: punched, end: end, pagesExamined: 1000)
        expectClose(state.resumeMicros, 2640)  // 0.8 × 2800 + 0.2 × 2000
        expectClose(state.pauseFixedMicros, 5360)  // 0.8 × 5200 + 0.2 × 6000
        expectClose(state.pausePerPageMicros, 7.55)  // 0.7 × 6.5 + 0.3 × 10

        // A slow suspend (100 ms) and resume (9 ms), 10 pages: capped samples, per page kept.
        var slow = ReclaimState()
        slow.pausesMeasured = 1
        slow.learnCosts(
            start: t0, suspended: t0 + .milliseconds(100), punched: t0 + .milliseconds(101),
            end: t0 + .milliseconds(110), pagesExamined: 10)
        expectClose(slow.resumeMicros, 3600)  // sample 9000 capped at 6000: 2400 + 1200
        expectClose(slow.pauseFixedMicros, 6000)  // sample 109000 capped at 10000: 4000 + 2000
        expectClose(slow.pausePerPageMicros, 5)  // fewer than 64 pages: not learned
    }

    @Test("Per-page cost is learned from 64 examined pages on, never from fewer")
    func perPageThreshold() {
        // Verify and punch 640 µs: 10 µs per page over 64 pages.
        let suspended = t0 + .milliseconds(1), punched = suspended + .microseconds(640), end = punched + .milliseconds(3)
        var at64 = ReclaimState()
        at64.pausesMeasured = 1
        at64.learnCosts(start: t0, suspended: suspended, punched: punched, end: end, pagesExamined: 64)
        expectClose(at64.pausePerPageMicros, 6.5)  // 0.7 × 5 + 0.3 × 10
        var at63 = ReclaimState()
        at63.pausesMeasured = 1
        at63.learnCosts(start: t0, suspended: suspended, punched: punched, end: end, pagesExamined: 63)
        expectClose(at63.pausePerPageMicros, 5)
        var none = ReclaimState()
        none.pausesMeasured = 1
        none.learnCosts(start: t0, suspended: suspended, punched: punched, end: end, pagesExamined: 0)
        expectClose(none.pausePerPageMicros, 5)
        expectClose(none.pauseFixedMicros, 4800)  // 0.8 × 5000 + 0.2 × (1000 + 3000)
    }

    @Test("The first pause is a 64-page probe whose costs replace the guesses")
    func probe() {
        var state = ReclaimState()
        #expect(state.batchSize(maxPauseMs: 100) == 64)  // nothing measured yet
        // Suspend 9 ms, 64 pages in 0.64 ms, resume 8 ms: the probe's figures are taken whole.
        let suspended = t0 + .milliseconds(9), punched = suspended + .microseconds(640), end = punched + .milliseconds(8)
        state.learnCosts(start: t0, suspended: suspended, punched: punched, end: end, pagesExamined: 64)
        expectClose(state.pauseFixedMicros, 17_000)  // 9000 + 8000, not capped at 2 × 5000
        expectClose(state.resumeMicros, 8_000)
        expectClose(state.pausePerPageMicros, 6.5)  // per page still moves 30%: 0.7 × 5 + 0.3 × 10
        #expect(state.pausesMeasured == 1)
        #expect(state.lastPauseEnd == end)
        // Now sized from the costs: 100 × 700 = 70000 − 17000 = 53000; / 6.5 = 8153.8
        #expect(state.batchSize(maxPauseMs: 100) == 8153)
    }

    @Test("A probe after a busy spell replaces the costs it learned")
    func probeReplacesBusyCosts() {
        var state = ReclaimState()
        state.pausesMeasured = 5
        state.pauseFixedMicros = 30_000  // learned under a CPU hog
        state.resumeMicros = 15_000
        state.probing = true
        // Suspend 2.5 ms, 64 pages in 0.64 ms, resume 3 ms.
        let suspended = t0 + .microseconds(2500), punched = suspended + .microseconds(640), end = punched + .milliseconds(3)
        state.learnCosts(start: t0, suspended: suspended, punched: punched, end: end, pagesExamined: 64)
        expectClose(state.pauseFixedMicros, 5_500)  // 2500 + 3000, not 0.8 × 30000 + 0.2 × 5500
        expectClose(state.resumeMicros, 3_000)
        #expect(!state.probing)
        // The next pause is not a probe: estimates move a fifth of the way again.
        state.learnCosts(start: t0, suspended: suspended, punched: punched, end: end + .milliseconds(5), pagesExamined: 64)
        // Resume sample 8000 µs, capped at 2 × 3000 = 6000: 0.8 × 3000 + 0.2 × 6000 = 3600.
        expectClose(state.resumeMicros, 3_600)
    }

    @Test("Deferral without QEMU's events: a fixed cost over 80% of the budget until a probe is due; never CPU pressure")
    func deferralByCalls() {
        var state = ReclaimState()
        // Unmeasured guesses (9000 µs of 10 ms) never defer: the probe measures them.
        state.pauseFixedMicros = 9_000
        #expect(state.deferral(maxPauseMs: 10, at: t0) == nil)
        // Measured: 9 ms > 80% of 10 ms. 8 ms is not over.
        state.pausesMeasured = 3
        state.lastPauseEnd = t0
        let costly = state.deferral(maxPauseMs: 10, at: t0 + .seconds(59))
        #expect(costly?.reason == .pauseCost)
        #expect(costly?.detail == "suspend and resume take 9.0 ms of max_pause_ms 10; probing again 60 s after the last pause")
        state.pauseFixedMicros = 8_000
        #expect(state.deferral(maxPauseMs: 10, at: t0) == nil)
        // A minute after the last pause a probe may go.
        state.pauseFixedMicros = 9_000
        #expect(state.deferral(maxPauseMs: 10, at: t0 + .seconds(60)) == nil)
        // A bigger budget takes the same cost: 9 ms of 20 ms.
        #expect(state.deferral(maxPauseMs: 20, at: t0) == nil)
    }

    @Test("Deferral by what the guest saw: the calls' latency does not count, the time QEMU kept the guest stopped does")
    func deferralByGuestSeen() {
        var state = ReclaimState()
        state.pausesMeasured = 3
        state.lastPauseEnd = t0
        // Calls of 16.8 ms (the busy host of issue 20), but the guest saw 6 ms around 1 ms of
        // punching: overhead 5000 µs; window 10000 − 5000 − 500 = 4500 µs: no wait.
        state.pauseFixedMicros = 16_800
        state.guestSeen.add(guestSeenMs: 6, punchMs: 1)
        #expect(state.deferral(maxPauseMs: 10, at: t0 + .seconds(1)) == nil)
        #expect(state.guestSeen.punchWindow(maxPauseMs: 10) == .microseconds(4500))
        // The guest stopped 10 ms for 0.2 ms of punching: 9800 µs; window 10000 − 9800 − 500 < 0.
        state.guestSeen.add(guestSeenMs: 10, punchMs: 0.2)
        let costly = state.deferral(maxPauseMs: 10, at: t0 + .seconds(1))
        #expect(costly?.reason == .pauseCost)
        #expect(costly?.detail == "QEMU keeps the guest stopped 9.8 ms around a pause of ours (STOP to RESUME), leaving no room within max_pause_ms 10; probing again 60 s after the last pause")
        // A probe a minute after the last pause.
        #expect(state.deferral(maxPauseMs: 10, at: t0 + .seconds(60)) == nil)
    }

    @Test("Guest-seen cost: the largest of fewer than four samples, else the second largest of the last eight")
    func guestSeenCost() {
        var cost = GuestSeenCost()
        #expect(cost.punchWindow(maxPauseMs: 10) == nil)
        cost.add(guestSeenMs: 5, punchMs: 2)  // 3000 µs
        cost.add(guestSeenMs: 4, punchMs: 3)  // 1000 µs
        #expect(cost.plannedOverheadMicros == 3000)
        cost.add(guestSeenMs: 9, punchMs: 1)  // 8000 µs
        cost.add(guestSeenMs: 2, punchMs: 0)  // 2000 µs: four samples, the second largest is 3000
        #expect(cost.plannedOverheadMicros == 3000)
        // 10000 − 3000 − 500 = 6500 µs.
        #expect(cost.punchWindow(maxPauseMs: 10) == .microseconds(6500))
        // A window under a millisecond is no window: 4000 − 3000 − 500 = 500 µs.
        #expect(cost.punchWindow(maxPauseMs: 4) == .zero)
        // A guest-seen length shorter than the punching (clock slack) counts as no overhead.
        for _ in 0..<8 { cost.add(guestSeenMs: 1, punchMs: 2) }
        #expect(cost.overheads == Array(repeating: 0, count: 8))
        cost.reset()
        #expect(cost.plannedOverheadMicros == nil)
    }

    @Test("CPU pressure spaces pauses out, a second per multiple of the limit, at most 30 s; never forbids them")
    func pressureSpacing() {
        #expect(ReclaimState.pressureSpacing(pressure: nil, limit: 10) == nil)
        #expect(ReclaimState.pressureSpacing(pressure: 10, limit: 10) == nil)  // not over
        #expect(ReclaimState.pressureSpacing(pressure: 13, limit: 10) == .milliseconds(1300))
        #expect(ReclaimState.pressureSpacing(pressure: 70.3, limit: 10) == .milliseconds(7030))
        #expect(ReclaimState.pressureSpacing(pressure: 99, limit: 2) == .seconds(30))
        #expect(ReclaimState.pressureSpacing(pressure: 99, limit: 100) == nil)  // 100: never waits
    }

    @Test("A page confirmed twice (the second look, then the engine) waits once; taken, it may come again")
    func pendingOnce() {
        var state = ReclaimState()
        state.addPending(page: 7, region: 0, at: t0)
        state.addPending(page: 7, region: 0, at: t0)
        state.addPending(page: 8, region: 0, at: t0)
        #expect(state.pending[0] == [7, 8])
        #expect(state.pendingPages == 2)
    }

    @Test("Zero candidates: looked at again after 20 s, in the order seen, at most a batch at a time")
    func zeroCandidates() {
        var candidates = ZeroCandidates()
        candidates.add(page: 5, region: 1, at: t0)
        candidates.add(page: 3, region: 0, at: t0 + .seconds(1))
        candidates.add(page: 9, region: 1, at: t0 + .seconds(10))
        #expect(candidates.due(at: t0 + .seconds(19)).isEmpty)
        let first = candidates.due(at: t0 + .seconds(21))
        #expect(first.map(\.region) == [0, 1])
        #expect(first.map(\.pages) == [[3], [5]])
        #expect(candidates.count == 1)
        let limited = candidates.due(at: t0 + .seconds(40), limit: 0)
        #expect(limited.isEmpty)
        #expect(candidates.due(at: t0 + .seconds(40)).map(\.pages) == [[9]])
        #expect(candidates.count == 0)
    }

    @Test("Duty cycle: pauses that ended in the last minute count, older ones are forgotten")
    func dutyCycle() {
        var state = ReclaimState()
        state.recentPauses = [(t0, 30), (t0 + .seconds(30), 20), (t0 + .seconds(50), 10)]
        let pausedAt60 = state.millisecondsPaused(inMinuteUpTo: t0 + .seconds(60))  // exactly a minute: kept
        #expect(pausedAt60 == 60)
        #expect(state.recentPauses.count == 3)
        let pausedAt70 = state.millisecondsPaused(inMinuteUpTo: t0 + .seconds(70))  // 20 + 10
        #expect(pausedAt70 == 30)
        #expect(state.recentPauses.count == 2)
        // 30 used + 20 for the next pause = 50.
        let within50 = state.dutyCycleAllows(maxPauseMs: 20, maxPauseMsPerMinute: 50, at: t0 + .seconds(70))
        #expect(within50)
        let within49 = state.dutyCycleAllows(maxPauseMs: 20, maxPauseMsPerMinute: 49, at: t0 + .seconds(70))
        #expect(!within49)
        // At t0 + 110 s only the pause of t0 + 50 s is left: 10 + 20 = 30.
        let within29 = state.dutyCycleAllows(maxPauseMs: 20, maxPauseMsPerMinute: 29, at: t0 + .seconds(110))
        #expect(!within29)
        let within30 = state.dutyCycleAllows(maxPauseMs: 20, maxPauseMsPerMinute: 30, at: t0 + .seconds(110))
        #expect(within30)
        #expect(state.recentPauses.count == 1)
    }

    @Test("Overrun backoff: 2 s per recent overrun, at most 30 s")
    func overrunBackoffSeconds() {
        #expect(ReclaimState.overrunBackoffSeconds(recentOverruns: 1) == 2)
        #expect(ReclaimState.overrunBackoffSeconds(recentOverruns: 3) == 6)
        #expect(ReclaimState.overrunBackoffSeconds(recentOverruns: 15) == 30)
        #expect(ReclaimState.overrunBackoffSeconds(recentOverruns: 16) == 30)
        #expect(ReclaimState.overrunBackoffSeconds(recentOverruns: 40) == 30)
    }

    @Test("A pause over budget backs the guest off from its end, counting the overruns remembered")
    func recordPause() {
        var state = ReclaimState()
        let first = state.recordPause(end: t0, milliseconds: 10, maxPauseMs: 20)
        #expect(first == nil)
        #expect(state.backoffUntil == nil)
        let second = state.recordPause(end: t0 + .seconds(1), milliseconds: 25, maxPauseMs: 20)  // 1 overrun
        #expect(second == 2)
        #expect(state.backoffUntil == t0 + .seconds(3))
        let third = state.recordPause(end: t0 + .seconds(5), milliseconds: 20, maxPauseMs: 20)  // not over
        #expect(third == nil)
        #expect(state.backoffUntil == t0 + .seconds(3))
        let fourth = state.recordPause(end: t0 + .seconds(6), milliseconds: 30, maxPauseMs: 20)  // 2 overruns
        #expect(fourth == 4)
        #expect(state.backoffUntil == t0 + .seconds(10))
        #expect(state.recentPauses.count == 4)
        // A minute later the first two pauses are forgotten: left 20 + 30 ms, one overrun.
        let pausedAt62 = state.millisecondsPaused(inMinuteUpTo: t0 + .seconds(62))
        #expect(pausedAt62 == 50)
        let afterForgetting = state.recordPause(end: t0 + .seconds(62), milliseconds: 40, maxPauseMs: 20)  // 2 overruns
        #expect(afterForgetting == 4)
        #expect(state.backoffUntil == t0 + .seconds(66))
    }

    @Test("Due: pages pending, enough of them or the oldest waited long enough, not backed off")
    func isDue() {
        var state = ReclaimState()
        let delay = Duration.seconds(2)
        #expect(!state.isDue(at: t0, batchMinimum: 256, delay: delay))
        for page in 0..<10 { state.addPending(page: page, region: 0, at: t0 + .milliseconds(page)) }
        #expect(state.oldestPending == t0)
        #expect(state.pendingPages == 10)
        #expect(!state.isDue(at: t0 + .seconds(1), batchMinimum: 256, delay: delay))
        #expect(state.isDue(at: t0 + .seconds(2), batchMinimum: 256, delay: delay))
        #expect(state.isDue(at: t0, batchMinimum: 10, delay: delay))  // enough pages at once
        #expect(!state.isDue(at: t0, batchMinimum: 11, delay: delay))
        state.backoffUntil = t0 + .seconds(5)
        #expect(!state.isDue(at: t0 + .seconds(4), batchMinimum: 256, delay: delay))
        #expect(state.isDue(at: t0 + .seconds(5), batchMinimum: 256, delay: delay))
        state.batchMayFreeSomething = false
        #expect(!state.isDue(at: t0 + .seconds(9), batchMinimum: 1, delay: delay))
        state.addPending(page: 10, region: 1, at: t0 + .seconds(9))  // a new page: worth trying again
        #expect(state.batchMayFreeSomething)
        #expect(state.oldestPending == t0)
        #expect(state.isDue(at: t0 + .seconds(9), batchMinimum: 256, delay: delay))
    }

    @Test("Pending pages: hot pages are never filed again, a region holds at most 2^18")
    func addPending() {
        var state = ReclaimState()
        var hot = PageSet(pageCount: 100)
        hot.insert(5..<6)
        state.hot[0] = hot
        state.addPending(page: 5, region: 0, at: t0)
        #expect(state.pending.isEmpty && state.oldestPending == nil)
        state.addPending(page: 6, region: 0, at: t0)
        state.addPending(page: 5, region: 1, at: t0)  // hot only in region 0
        #expect(state.pending == [0: [6], 1: [5]])

        state.pending[2] = Array(0..<262_144)
        state.addPending(page: 262_144, region: 2, at: t0)
        #expect(state.pending[2]?.count == 262_144)
        #expect(state.pendingPages == 262_146)
    }

    @Test("Held pages are counted over all regions")
    func heldPages() {
        var state = ReclaimState()
        var a = PageSet(pageCount: 1000)
        a.insert(0..<10)
        a.insert(500..<503)
        var b = PageSet(pageCount: 64)
        b.insert(63..<64)
        state.held = [0: a, 3: b]
        #expect(state.heldPages == 14)
    }
}

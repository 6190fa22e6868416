@testable import SamepageAgent
import SamepageModel
import Testing

/// The changes of a guest's reclaim status that the reclaimer makes through ``ReclaimState``'s
/// methods: waits counted once per start or change of reason, totals handed over on leaving,
/// pages put back.
@Suite("Reclaim state: waits and totals") struct ReclaimStateLifecycleTests {
    let pressure = ReclaimDeferral(.cpuPressure, detail: "host CPU pressure 43.1% (limit 10.0%)")

    @Test func aWaitIsCountedOncePerStartOrChangeOfReason() {
        var state = ReclaimState()
        let started = state.recordDeferral(pressure)
        #expect(started)
        // The same reason again, with other figures: not a new wait.
        let again = state.recordDeferral(ReclaimDeferral(.cpuPressure, detail: "host CPU pressure 12.0% (limit 10.0%)"))
        #expect(!again)
        #expect(state.status.deferred?.detail == "host CPU pressure 12.0% (limit 10.0%)")
        let changed = state.recordDeferral(ReclaimDeferral(.pauseCost, detail: "cost"))
        #expect(changed)
        #expect(state.status.deferralsForCPUPressure == 1)
        #expect(state.status.deferralsForPauseCost == 1)
        let ended = state.clearDeferral()
        #expect(ended?.reason == .pauseCost)
        let none = state.clearDeferral()
        #expect(none == nil)
        // After its end, the same reason is a new wait.
        let restarted = state.recordDeferral(pressure)
        #expect(restarted)
        #expect(state.status.deferralsForCPUPressure == 2)
    }

    @Test func aWaitEndsWhenNothingIsPending() {
        var state = ReclaimState()
        state.addPending(page: 3, region: 0, at: .now)
        _ = state.recordDeferral(pressure)
        state.clearDeferralIfIdle()
        #expect(state.status.deferred != nil)
        state.forgetPending()
        state.clearDeferralIfIdle()
        #expect(state.status.deferred == nil)
    }

    @Test func aLeavingGuestHandsOverItsTotals() {
        var state = ReclaimState()
        state.status.zeroPagesReclaimed = 40
        state.status.pendingPages = 9
        let totals = state.takeTotals()
        #expect(totals.zeroPagesReclaimed == 40)
        #expect(totals.pendingPages == 0)
        #expect(state.status == ReclaimStatus())
    }

    @Test func aBatchPutBackIsPendingAgainButNotItsHotPages() {
        var state = ReclaimState()
        state.hot[1] = PageSet(pageCount: 16)
        state.hot[1]!.insert(5..<6)
        state.putBack([(region: 0, pages: [1, 2]), (region: 1, pages: [4, 5])], at: .now)
        #expect(state.pending[0] == [1, 2])
        // Page 5 of region 1 refaulted after a reclaim: never pending again.
        #expect(state.pending[1] == [4])
        #expect(state.pendingPages == 3)
    }
}

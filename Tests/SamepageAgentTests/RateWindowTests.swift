import SamepageAgent
import Testing

@Suite("Scan rate window")
struct RateWindowTests {
    @Test("The rate spans the window, drops old samples and restarts after a reset")
    func rate() {
        var window = RateWindow(span: .seconds(10))
        let t0 = ContinuousClock.now
        #expect(window.perSecond == 0)
        window.add(0, at: t0)
        window.add(50, at: t0 + .milliseconds(50))
        #expect(window.perSecond == 0, "under 100 ms of samples")
        for second in 1...30 { window.add(second * 1000, at: t0 + .seconds(second)) }
        #expect(abs(window.perSecond - 1000) < 1e-6)
        // The rate changes: after a full window at 3000/s only the new rate counts.
        for second in 31...41 { window.add(30_000 + (second - 30) * 3000, at: t0 + .seconds(second)) }
        #expect(abs(window.perSecond - 3000) < 1e-6)
        window.add(5, at: t0 + .seconds(42))
        #expect(window.perSecond == 0, "a count that went down starts afresh")
    }
}

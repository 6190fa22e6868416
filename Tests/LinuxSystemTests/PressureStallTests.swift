import LinuxSystem
import Testing

@Suite("Pressure stall information") struct PressureStallTests {
    @Test func parsesBothLines() throws {
        let text = """
            some avg10=12.50 avg60=4.96 avg300=10.90 total=2093555603
            full avg10=0.00 avg60=0.01 avg300=0.00 total=17

            """
        let stall = try #require(PressureStall(parsing: text))
        #expect(stall.some == .init(avg10: 12.5, avg60: 4.96, avg300: 10.9, totalMicroseconds: 2_093_555_603))
        #expect(stall.full == .init(avg10: 0, avg60: 0.01, avg300: 0, totalMicroseconds: 17))
    }

    @Test func aMissingFullLineIsNil() throws {
        let stall = try #require(PressureStall(parsing: "some avg10=1.00 avg60=2.00 avg300=3.00 total=4\n"))
        #expect(stall.full == nil)
        #expect(stall.some.avg300 == 3)
    }

    @Test(arguments: [
        "", "full avg10=0.00 avg60=0.00 avg300=0.00 total=0",
        "some avg10=x avg60=0.00 avg300=0.00 total=0", "some avg10=1.0 avg60=0.00 total=0",
        "some avg10=1.0 avg60=0.00 avg300=0.00 total=-3", "some avg10 avg60=0 avg300=0 total=0",
    ])
    func refusesMalformedText(_ text: String) {
        #expect(PressureStall(parsing: text) == nil)
    }

    @Test func readsThisHostsCPUFile() throws {
        // The kernels Samepage runs on have PSI; the parser must understand the real file.
        let stall = try PressureStall.read("cpu")
        #expect(stall.some.avg10 >= 0 && stall.some.avg10 <= 100)
        #expect(throws: SystemError.self) { try PressureStall.read("no-such-resource") }
    }

    @Test func windowNeedsItsMinimumSpan() {
        let t0 = ContinuousClock.now
        var window = PressureWindow(minimumSpan: .seconds(1))
        window.add(total: 1_000, at: t0)
        #expect(window.percent == nil)
        // 0.5 s later: too short a window, nothing computed yet.
        window.add(total: 400_000, at: t0 + .milliseconds(500))
        #expect(window.percent == nil)
        // 2 s after the start, 500,000 µs more stalled: 25%.
        window.add(total: 501_000, at: t0 + .seconds(2))
        #expect(window.percent == 25)
        // The next window starts at t0 + 2 s: 1 s with 1,000,000 µs stalled is 100%.
        window.add(total: 1_501_000, at: t0 + .seconds(3))
        #expect(window.percent == 100)
    }

    @Test func aTotalGoingBackwardsRestartsTheWindow() {
        let t0 = ContinuousClock.now
        var window = PressureWindow(minimumSpan: .seconds(1))
        window.add(total: 5_000_000, at: t0)
        window.add(total: 10, at: t0 + .seconds(2))
        #expect(window.percent == nil)
        window.add(total: 100_010, at: t0 + .seconds(3))
        // 100,000 µs over 1 s: 10%.
        #expect(window.percent == 10)
    }
}

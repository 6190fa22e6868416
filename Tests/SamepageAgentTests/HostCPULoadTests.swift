import LinuxSystem
@testable import SamepageAgent
import SamepageModel
import Testing

/// The host's CPU load fed by hand: readings come from closures over a script, at instants
/// the test chooses.
@Suite("The host's CPU load") struct HostCPULoadTests {
    /// The readings a test hands out, one per read, in order; a nil pressure throws.
    final class Script {
        var pressures: [PressureStall?]
        var times: [CPUTimes]
        var pressureReads = 0

        init(pressures: [PressureStall?], times: [CPUTimes] = []) {
            self.pressures = pressures
            self.times = times
        }
    }

    static func stall(avg10: Double, total: UInt64) -> PressureStall {
        PressureStall(some: .init(avg10: avg10, avg60: 0, avg300: 0, totalMicroseconds: total), full: nil)
    }

    static func load(_ script: Script) -> HostCPULoad {
        HostCPULoad(
            readPressure: { () throws(SystemError) in
                script.pressureReads += 1
                guard let next = script.pressures.removeFirst() else {
                    throw SystemError(errno: .noSuchFileOrDirectory, operation: "open /proc/pressure/cpu")
                }
                return next
            },
            readCPUTimes: { () throws(SystemError) in
                guard !script.times.isEmpty else { throw SystemError(errno: .noSuchFileOrDirectory, operation: "open /proc/stat") }
                return script.times.removeFirst()
            })
    }

    @Test func pressureIsMeasuredOverASecond() {
        let script = Script(
            pressures: [Self.stall(avg10: 5, total: 0), Self.stall(avg10: 5, total: 100_000), Self.stall(avg10: 5, total: 250_000)],
            times: [CPUTimes(idle: 0, total: 0), CPUTimes(idle: 20, total: 50), CPUTimes(idle: 50, total: 100)])
        var load = Self.load(script)
        let t0 = ContinuousClock.now
        let warning = load.read(needed: true, at: t0)
        #expect(warning == nil)
        // One reading is no window yet: a due pause waits.
        #expect(!load.isMeasured(pressureLimit: 10))
        _ = load.read(needed: true, at: t0 + .milliseconds(500))
        #expect(!load.isMeasured(pressureLimit: 10))
        // A second after the first: 250 000 µs stalled in 1 000 000 µs is 25%, above the
        // kernel's avg10 of 5; idle 50 of 100 ticks is 50%.
        _ = load.read(needed: true, at: t0 + .seconds(1))
        #expect(load.pressure == 25)
        #expect(load.idlePercent == 50)
        #expect(load.isMeasured(pressureLimit: 10))
        #expect(load.busyDeferral(pressureLimit: 10) == nil)
        // Not due again until 500 ms after the last reading.
        _ = load.read(needed: true, at: t0 + .milliseconds(1200))
        #expect(script.pressureReads == 3)
    }

    @Test func theKernelsAverageWinsWhenLarger() {
        let script = Script(
            pressures: [Self.stall(avg10: 12.5, total: 0), Self.stall(avg10: 12.5, total: 20_000)],
            times: [CPUTimes(idle: 0, total: 0), CPUTimes(idle: 90, total: 100)])
        var load = Self.load(script)
        let t0 = ContinuousClock.now
        _ = load.read(needed: true, at: t0)
        _ = load.read(needed: true, at: t0 + .seconds(1))
        // The second's 2% is below the 10-second average's 12.5%.
        #expect(load.pressure == 12.5)
    }

    @Test func readingsAreForgottenWhenNoGuestWaits() {
        let script = Script(
            pressures: [Self.stall(avg10: 0, total: 0), Self.stall(avg10: 0, total: 10_000), Self.stall(avg10: 0, total: 20_000)],
            times: [CPUTimes(idle: 0, total: 0), CPUTimes(idle: 90, total: 100), CPUTimes(idle: 180, total: 200)])
        var load = Self.load(script)
        let t0 = ContinuousClock.now
        _ = load.read(needed: true, at: t0)
        _ = load.read(needed: true, at: t0 + .seconds(1))
        #expect(load.isMeasured(pressureLimit: 10))
        _ = load.read(needed: false, at: t0 + .milliseconds(1500))
        #expect(load.pressure == nil)
        #expect(load.idlePercent == nil)
        #expect(!load.isMeasured(pressureLimit: 10))
        // Nothing was read for it.
        #expect(script.pressureReads == 2)
        // A new window starts from the next reading: one reading is not enough again.
        _ = load.read(needed: true, at: t0 + .seconds(2))
        #expect(!load.isMeasured(pressureLimit: 10))
        // max_cpu_pressure = 100 never waits, measured or not.
        #expect(load.isMeasured(pressureLimit: 100))
    }

    @Test func anUnreadablePressureIsReportedOnceAndHoldsNothing() {
        let script = Script(pressures: [nil, nil, Self.stall(avg10: 0, total: 0), nil])
        var load = Self.load(script)
        let t0 = ContinuousClock.now
        let first = load.read(needed: true, at: t0)
        #expect(first?.hasPrefix("cannot read the host's CPU pressure (") == true)
        #expect(first?.hasSuffix("): reclaim is not deferred for it") == true)
        let second = load.read(needed: true, at: t0 + .milliseconds(500))
        #expect(second == nil)
        // No PSI is not "not read yet": reclaim goes on, with no pressure to wait for.
        #expect(load.isMeasured(pressureLimit: 10))
        #expect(load.pressure == nil)
        #expect(load.busyDeferral(pressureLimit: 10) == nil)
        // Readable again, then not: said again.
        let readable = load.read(needed: true, at: t0 + .seconds(1))
        #expect(readable == nil)
        #expect(!load.isMeasured(pressureLimit: 10))
        let again = load.read(needed: true, at: t0 + .milliseconds(1500))
        #expect(again != nil)
    }

    @Test func busyCPUsHoldReclaimUnlessTheLimitIs100() {
        let script = Script(
            pressures: [Self.stall(avg10: 0, total: 0), Self.stall(avg10: 0, total: 0)],
            times: [CPUTimes(idle: 1000, total: 2000), CPUTimes(idle: 1005, total: 2100)])
        var load = Self.load(script)
        let t0 = ContinuousClock.now
        _ = load.read(needed: true, at: t0)
        _ = load.read(needed: true, at: t0 + .seconds(1))
        // 5 idle ticks of 100: 5% idle, 95% busy, under the 10% idle floor.
        #expect(load.idlePercent == 5)
        let deferral = load.busyDeferral(pressureLimit: 10)
        #expect(deferral?.reason == .cpuPressure)
        #expect(deferral?.detail == "the CPUs were 95.0% busy over the last second (reclaim waits above 90%)")
        #expect(load.busyDeferral(pressureLimit: 100) == nil)
    }
}

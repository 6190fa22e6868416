import KernelKSM
import LinuxSystem
import Testing

@Suite("When ksmd runs") struct KernelKSMRunPolicyTests {
    let t0 = ContinuousClock.now

    /// One sample of a sequence: when (seconds from t0), MemAvailable in permille of MemTotal,
    /// the some avg10 memory pressure, and the decision expected, written by hand.
    struct Step: Sendable {
        var at: Int
        var availablePermille: UInt64
        var pressure: Double?
        var run: Bool
        var why: String
    }

    func replay(_ steps: [Step], policy start: KernelKSMRunPolicy, sourceLocation: SourceLocation = #_sourceLocation) {
        var policy = start
        for step in steps {
            let decision = policy.decide(
                memTotal: 1000, memAvailable: step.availablePermille, memoryPressure: step.pressure,
                now: t0 + .seconds(step.at))
            #expect(decision.run == step.run, "at \(step.at) s", sourceLocation: sourceLocation)
            #expect(decision.why == step.why, "at \(step.at) s", sourceLocation: sourceLocation)
            #expect(policy.isRunning == step.run, sourceLocation: sourceLocation)
        }
    }

    @Test func startsWhenShortAndStopsAfterACalmMinute() {
        replay([
            Step(at: 0, availablePermille: 500, pressure: 0, run: false,
                 why: "MemAvailable is 50.0% of MemTotal, not below 20%, and memory pressure is 0.0%"),
            // Exactly at the threshold is not below it.
            Step(at: 5, availablePermille: 200, pressure: 1.0, run: false,
                 why: "MemAvailable is 20.0% of MemTotal, not below 20%, and memory pressure is 1.0%"),
            Step(at: 10, availablePermille: 190, pressure: 0, run: true, why: "MemAvailable is 19.0% of MemTotal, below 20%"),
            // Above the threshold but below threshold + 5: keeps running.
            Step(at: 20, availablePermille: 220, pressure: 0, run: true,
                 why: "MemAvailable is 22.0% of MemTotal, below 25% (20% + 5): ksmd keeps running"),
            // Calm (pressure at most 1%) from 30 s.
            Step(at: 30, availablePermille: 260, pressure: 0.5, run: true,
                 why: "MemAvailable is 26.0% of MemTotal, at least 25%, and memory pressure is 0.5%, for 0 s of 60 s: ksmd keeps running"),
            Step(at: 60, availablePermille: 300, pressure: 0, run: true,
                 why: "MemAvailable is 30.0% of MemTotal, at least 25%, and memory pressure is 0.0%, for 30 s of 60 s: ksmd keeps running"),
            // Pressure restarts the minute.
            Step(at: 70, availablePermille: 300, pressure: 2.5, run: true,
                 why: "memory pressure is 2.5% (some avg10), over 1.0%"),
            Step(at: 80, availablePermille: 300, pressure: 0, run: true,
                 why: "MemAvailable is 30.0% of MemTotal, at least 25%, and memory pressure is 0.0%, for 0 s of 60 s: ksmd keeps running"),
            // An unknown pressure counts as none.
            Step(at: 130, availablePermille: 300, pressure: nil, run: true,
                 why: "MemAvailable is 30.0% of MemTotal, at least 25%, and memory pressure is unknown, for 50 s of 60 s: ksmd keeps running"),
            Step(at: 140, availablePermille: 300, pressure: 0, run: false,
                 why: "MemAvailable is 30.0% of MemTotal, at least 25%, and memory pressure is 0.0%, for 60 s: ksmd stops"),
            // Stopped, in the band: stays stopped.
            Step(at: 150, availablePermille: 220, pressure: 0, run: false,
                 why: "MemAvailable is 22.0% of MemTotal, not below 20%, and memory pressure is 0.0%"),
            Step(at: 160, availablePermille: 150, pressure: 3, run: true,
                 why: "MemAvailable is 15.0% of MemTotal, below 20% and memory pressure is 3.0% (some avg10), over 1.0%"),
        ], policy: KernelKSMRunPolicy(availableThresholdPercent: 20))
    }

    @Test func aDipIntoTheBandRestartsTheMinute() {
        replay([
            Step(at: 0, availablePermille: 100, pressure: 0, run: true, why: "MemAvailable is 10.0% of MemTotal, below 20%"),
            Step(at: 10, availablePermille: 400, pressure: 0, run: true,
                 why: "MemAvailable is 40.0% of MemTotal, at least 25%, and memory pressure is 0.0%, for 0 s of 60 s: ksmd keeps running"),
            Step(at: 65, availablePermille: 249, pressure: 0, run: true,
                 why: "MemAvailable is 24.9% of MemTotal, below 25% (20% + 5): ksmd keeps running"),
            Step(at: 70, availablePermille: 400, pressure: 0, run: true,
                 why: "MemAvailable is 40.0% of MemTotal, at least 25%, and memory pressure is 0.0%, for 0 s of 60 s: ksmd keeps running"),
            Step(at: 129, availablePermille: 400, pressure: 0, run: true,
                 why: "MemAvailable is 40.0% of MemTotal, at least 25%, and memory pressure is 0.0%, for 59 s of 60 s: ksmd keeps running"),
            Step(at: 130, availablePermille: 400, pressure: 0, run: false,
                 why: "MemAvailable is 40.0% of MemTotal, at least 25%, and memory pressure is 0.0%, for 60 s: ksmd stops"),
        ], policy: KernelKSMRunPolicy(availableThresholdPercent: 20))
    }

    @Test func pressureAloneStartsIt() {
        replay([
            Step(at: 0, availablePermille: 900, pressure: 1.01, run: true, why: "memory pressure is 1.0% (some avg10), over 1.0%"),
        ], policy: KernelKSMRunPolicy())
    }

    @Test func aRunningKSMdTakenOverStopsOnlyAfterTheMinute() {
        replay([
            Step(at: 0, availablePermille: 900, pressure: 0, run: true,
                 why: "MemAvailable is 90.0% of MemTotal, at least 25%, and memory pressure is 0.0%, for 0 s of 60 s: ksmd keeps running"),
            Step(at: 60, availablePermille: 900, pressure: 0, run: false,
                 why: "MemAvailable is 90.0% of MemTotal, at least 25%, and memory pressure is 0.0%, for 60 s: ksmd stops"),
        ], policy: KernelKSMRunPolicy(availableThresholdPercent: 20, running: true))
    }

    @Test func aHundredAlwaysRuns() {
        replay([
            Step(at: 0, availablePermille: 1000, pressure: 0, run: true, why: "available_threshold_percent = 100: ksmd always runs"),
            Step(at: 600, availablePermille: 1000, pressure: nil, run: true, why: "available_threshold_percent = 100: ksmd always runs"),
        ], policy: KernelKSMRunPolicy(availableThresholdPercent: 100))
    }

    @Test func aboveNinetyFiveOnceStartedItNeverStops() {
        replay([
            Step(at: 0, availablePermille: 960, pressure: 0, run: true, why: "MemAvailable is 96.0% of MemTotal, below 97%"),
            Step(at: 10, availablePermille: 999, pressure: 0, run: true,
                 why: "MemAvailable is 99.9% of MemTotal, below 100% (97% + 5): ksmd keeps running"),
            Step(at: 3600, availablePermille: 999, pressure: 0, run: true,
                 why: "MemAvailable is 99.9% of MemTotal, below 100% (97% + 5): ksmd keeps running"),
        ], policy: KernelKSMRunPolicy(availableThresholdPercent: 97))
    }

    @Test func aSampleWithoutMemTotalChangesNothing() {
        var policy = KernelKSMRunPolicy(running: true)
        #expect(policy.decide(memTotal: 0, memAvailable: 0, memoryPressure: 0, now: t0) == (true, "MemTotal is 0: the sample is ignored"))
        #expect(policy.isRunning && policy.calmSince == nil)
    }

    @Test func theReadingsDecideThroughTheirAverageOfTenSeconds() {
        var policy = KernelKSMRunPolicy(availableThresholdPercent: 20)
        let memory = MemoryInfo(totalBytes: 8 << 30, availableBytes: 4 << 30)
        let calmNow = PressureStall(some: .init(avg10: 0, avg60: 40, avg300: 40, totalMicroseconds: 1), full: nil)
        #expect(policy.decide(memory: memory, pressure: calmNow, now: t0).run == false)
        let stalling = PressureStall(some: .init(avg10: 5, avg60: 0, avg300: 0, totalMicroseconds: 2), full: nil)
        #expect(policy.decide(memory: memory, pressure: stalling, now: t0 + .seconds(1))
            == (true, "memory pressure is 5.0% (some avg10), over 1.0%"))
        let short = MemoryInfo(totalBytes: 8 << 30, availableBytes: 1 << 30)
        #expect(policy.decide(memory: short, pressure: nil, now: t0 + .seconds(2))
            == (true, "MemAvailable is 12.5% of MemTotal, below 20%"))
    }
}

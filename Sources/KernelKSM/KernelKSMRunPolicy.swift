import LinuxSystem

/// When ksmd runs: while memory is short, with hysteresis so that it does not flap.
///
/// KSM costs CPU (ksmd's scans) and latency (a write to a merged page takes a copy-on-write
/// fault), and saves memory; it is worth running when memory is short. ksmtuned started ksmd
/// once free memory fell below 20% of the total, and oVirt's MoM when free memory fell below
/// 20% of what guests could use. This policy reads the kernel's better measures of the same
/// thing, `MemAvailable` (``MemoryInfo``) and memory pressure (`/proc/pressure/memory`,
/// ``PressureStall``):
///
/// - **Start** as soon as `MemAvailable` is below `available_threshold_percent` of
///   `MemTotal`, or the `some avg10` memory pressure (the share of the last 10 seconds in
///   which some task waited for memory) is over ``pressureThresholdPercent`` (1%): tasks
///   already stall in reclaim, whatever `MemAvailable` says.
/// - **Stop** only once `MemAvailable` has been at least ``stopMarginPercent`` (5) points
///   above the threshold, with no pressure, on every sample for ``quietPeriod`` (a minute).
///   Between the threshold and threshold + 5 a running ksmd keeps running and a stopped one
///   stays stopped; any sample that is short or pressured restarts the minute. Merged pages
///   are kept when ksmd stops (`run` = 0), so stopping frees nothing and costs nothing.
/// - A threshold of 100 always runs. (Above 95, threshold + 5 is 100% available, which is
///   never reached: once started, ksmd keeps running.)
/// - An unreadable pressure (`nil`: a kernel without PSI, or `psi=0`) counts as none, so
///   the decision rests on `MemAvailable` alone.
///
/// Pure: the caller samples `/proc/meminfo` and `/proc/pressure/memory` (every few seconds;
/// the minute is measured between samples' times, not counted in samples), passes the time,
/// and writes `run` when ``decide(memTotal:memAvailable:memoryPressure:now:)`` changes its
/// answer.
public struct KernelKSMRunPolicy: Sendable, Equatable {
    /// Points above the threshold that `MemAvailable` must reach before ksmd stops.
    public static let stopMarginPercent = 5
    /// Memory pressure (`some avg10`, in percent) above which ksmd runs whatever memory is
    /// available: 1% of the time some task waited for memory.
    public static let pressureThresholdPercent = 1.0
    /// How long every sample must be calm before ksmd stops.
    public static let quietPeriod: Duration = .seconds(60)

    /// ksmd runs while `MemAvailable` is below this share of `MemTotal`, in percent (1 to
    /// 100; 100 always runs).
    public var availableThresholdPercent: Int
    /// The answer of the last decision (or the state the policy was started in).
    public private(set) var isRunning: Bool
    /// Since when every sample has been calm, while ksmd runs; nil otherwise.
    public private(set) var calmSince: ContinuousClock.Instant?

    /// A policy with the given threshold, taking over a ksmd that is `running` or not.
    public init(availableThresholdPercent: Int = 20, running: Bool = false) {
        self.availableThresholdPercent = availableThresholdPercent
        self.isRunning = running
    }

    /// Whether ksmd should run after a sample of `/proc/meminfo` (`memTotal`, `memAvailable`,
    /// in any one unit) and `/proc/pressure/memory` (`memoryPressure`: `some avg10` in
    /// percent, nil when unknown) taken at `now`, and why, in words for a log line.
    public mutating func decide(
        memTotal: UInt64, memAvailable: UInt64, memoryPressure: Double?, now: ContinuousClock.Instant
    ) -> (run: Bool, why: String) {
        guard availableThresholdPercent < 100 else {
            return start("available_threshold_percent = 100: ksmd always runs")
        }
        guard memTotal > 0 else {
            return (isRunning, "MemTotal is 0: the sample is ignored")
        }
        let available = Double(memAvailable) / Double(memTotal) * 100
        let threshold = Double(availableThresholdPercent)
        let short = available < threshold
        let pressured = (memoryPressure ?? 0) > Self.pressureThresholdPercent
        let memory = "MemAvailable is \(Self.percent(available)) of MemTotal"
        let pressure = memoryPressure.map { "memory pressure is \(Self.percent($0))" } ?? "memory pressure is unknown"

        if short || pressured {
            var reasons: [String] = []
            if short {
                reasons.append("\(memory), below \(availableThresholdPercent)%")
            }
            if pressured {
                reasons.append("\(pressure) (some avg10), over \(Self.percent(Self.pressureThresholdPercent))")
            }
            return start(reasons.joined(separator: " and "))
        }
        guard isRunning else {
            return (false, "\(memory), not below \(availableThresholdPercent)%, and \(pressure)")
        }
        let stopLevel = min(availableThresholdPercent + Self.stopMarginPercent, 100)
        guard available >= Double(stopLevel) else {
            calmSince = nil
            return (true, "\(memory), below \(stopLevel)% (\(availableThresholdPercent)% + \(Self.stopMarginPercent)): ksmd keeps running")
        }
        let since = calmSince ?? now
        calmSince = since
        let calm = now - since
        guard calm >= Self.quietPeriod else {
            return (
                true,
                "\(memory), at least \(stopLevel)%, and \(pressure), for \(calm.components.seconds) s of "
                    + "\(Self.quietPeriod.components.seconds) s: ksmd keeps running"
            )
        }
        isRunning = false
        calmSince = nil
        return (false, "\(memory), at least \(stopLevel)%, and \(pressure), for \(calm.components.seconds) s: ksmd stops")
    }

    /// The decision for a reading of `/proc/meminfo` and one of `/proc/pressure/memory` (nil
    /// when it could not be read).
    public mutating func decide(
        memory: MemoryInfo, pressure: PressureStall?, now: ContinuousClock.Instant
    ) -> (run: Bool, why: String) {
        decide(
            memTotal: memory.totalBytes, memAvailable: memory.availableBytes, memoryPressure: pressure?.some.avg10,
            now: now)
    }

    private mutating func start(_ why: String) -> (run: Bool, why: String) {
        isRunning = true
        calmSince = nil
        return (true, why)
    }

    /// `12.3%`: one decimal, rounded.
    static func percent(_ value: Double) -> String {
        let tenths = Int((max(0, value) * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)%"
    }
}

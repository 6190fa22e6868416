import Foundation
import LinuxSystem
import SamepageModel

/// The host's CPU load, as a due reclaim pause needs to know it: `/proc/pressure/cpu` (how
/// long some task waited for a CPU) over the last second and the kernel's 10-second
/// average, and the CPUs' idle share over the last second (`/proc/stat`).
///
/// Its own room because nothing but the decision to pause now or wait reads these six
/// values, and because the readings come through two closures (the real files by default),
/// so that a test feeds readings and a clock of its choosing. It reads only while some guest
/// has pages waiting for a pause: an idle host reads nothing.
struct HostCPULoad {
    /// Reads `/proc/pressure/cpu`.
    var readPressure: () throws(SystemError) -> PressureStall
    /// Reads the host's CPU times (`/proc/stat`).
    var readCPUTimes: () throws(SystemError) -> CPUTimes

    /// The pressure over the last complete window of a second, from the `some` total.
    private(set) var pressureWindow = PressureWindow()
    /// The latest reading, nil when none (nothing waits, or the file cannot be read).
    private(set) var latest: PressureStall?
    private var nextReading: ContinuousClock.Instant?
    /// The CPU times at the start of the current idle window, and the idle share over the
    /// last complete window (at least a second).
    private var idleWindowStart: (at: ContinuousClock.Instant, times: CPUTimes)?
    private(set) var idlePercent: Double?
    /// Why the pressure cannot be read (no PSI on this kernel); then reclaim does not wait for it.
    private(set) var unavailable: String?

    init(
        readPressure: @escaping () throws(SystemError) -> PressureStall = { () throws(SystemError) in try PressureStall.read("cpu") },
        readCPUTimes: @escaping () throws(SystemError) -> CPUTimes = { () throws(SystemError) in try CPUTimes.read() }
    ) {
        self.readPressure = readPressure
        self.readCPUTimes = readCPUTimes
    }

    /// How often the files are read at most (each a 4 KiB read).
    static let readingInterval: Duration = .milliseconds(500)

    /// Reclaim waits while the CPUs were idle less than this share of the last second.
    static let minimumIdlePercent = 10.0

    /// Takes a reading at `now` if one is due, while `needed` (some guest has zero pages
    /// waiting for a pause); when not needed, forgets every reading, so the first pause
    /// after idle waits for a fresh window of a second.
    ///
    /// - Returns: A warning to log, the first time the pressure cannot be read (not again
    ///   until it could be read once more).
    mutating func read(needed: Bool, at now: ContinuousClock.Instant) -> String? {
        if let nextReading, now < nextReading { return nil }
        nextReading = now + Self.readingInterval
        guard needed else {
            latest = nil
            pressureWindow = PressureWindow()
            idleWindowStart = nil
            idlePercent = nil
            return nil
        }
        let stall: PressureStall
        do { stall = try readPressure() } catch {
            let warning = unavailable == nil
                ? "cannot read the host's CPU pressure (\(error)): reclaim is not deferred for it" : nil
            unavailable = error.description
            latest = nil
            return warning
        }
        latest = stall
        pressureWindow.add(total: stall.some.totalMicroseconds, at: now)
        unavailable = nil
        if let times = try? readCPUTimes() {
            if let start = idleWindowStart {
                if now - start.at >= .seconds(1) {
                    idlePercent = times.idlePercent(since: start.times)
                    idleWindowStart = (now, times)
                }
            } else {
                idleWindowStart = (now, times)
            }
        }
        return nil
    }

    /// The pressure that decides deferral, in percent: the larger of the last second's
    /// (prompt when a load starts) and the kernel's 10-second average (which keeps reclaim
    /// waiting a little after it ends). nil when the host has no PSI or nothing was read.
    var pressure: Double? {
        guard let latest else { return nil }
        return max(latest.some.avg10, pressureWindow.percent ?? 0)
    }

    /// Whether enough is measured to decide under `pressureLimit` (percent; 100 never
    /// waits): a first window of a second of both pressure and idle share, or no PSI at all
    /// (which is not the same as not read yet). Until then a due pause waits.
    func isMeasured(pressureLimit: Double) -> Bool {
        pressureLimit >= 100 || unavailable != nil || (latest != nil && pressureWindow.percent != nil && idlePercent != nil)
    }

    /// The wait for CPUs that were all busy over the last second (libvirtd and QEMU would
    /// wait for a slice as soon as they woke), under `pressureLimit` (100 never waits).
    func busyDeferral(pressureLimit: Double) -> ReclaimDeferral? {
        guard pressureLimit < 100, let idle = idlePercent, idle < Self.minimumIdlePercent else { return nil }
        return ReclaimDeferral(
            .cpuPressure,
            detail: String(format: "the CPUs were %.1f%% busy over the last second (reclaim waits above %.0f%%)", 100 - idle, 100 - Self.minimumIdlePercent))
    }
}

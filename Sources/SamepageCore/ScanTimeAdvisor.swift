/// The kernel's scan-time advisor (`advisor_mode = scan-time`, mm/ksm.c's
/// `scan_time_advisor`, Linux 6.8): after every full scan it sets `pages_to_scan` so that a
/// full scan takes about `advisor_target_scan_time`, within a CPU budget.
///
/// How many pages KSM has to look at changes all the time (guests start, grow, leave), so a
/// fixed `pages_to_scan` is either too slow to find merges on a big host or wasteful on a
/// small one. The advisor steers by the one figure an operator can reason about, how long a
/// pass over all candidate pages takes, and by the scanning thread's own CPU use:
///
/// 1. **Towards the target.** A scan that took `scan` against a target `target` scales the
///    batch by `scan / target`: twice too slow, twice the pages.
/// 2. **Smoothed.** The batch is also scaled by how this scan's time compares with the
///    previous one's, averaged over scans (an exponentially weighted moving average, weight
///    30% for the newest), so one odd scan does not swing it. The average starts at 0, as the
///    kernel's does: the first scans after the advisor comes on move down cautiously and the
///    factor climbs towards 100% over a few scans.
/// 3. **Within a CPU budget.** From the scan's CPU use it estimates pages per percent of a
///    core, and keeps the next batch between what 1% and `advisor_max_cpu` percent would
///    scan: never so slow that changes go unnoticed for long, never more CPU than allowed.
///    (The kernel's floor, `KSM_ADVISOR_MIN_CPU`, is 10%: ksmd's pages cost more than
///    Samepage's, which scans about 38,000 pages per second with 10% of a core here, so a
///    10% floor would scan a few guests several times per target period: measured, a 10 s
///    target gave full scans every 3.5 s. The floor is the one difference of design.)
/// 4. **Capped** at `advisor_max_pages_to_scan`.
///
/// The arithmetic is the kernel's, integer divisions included, with one difference of unit:
/// the kernel counts whole seconds (a scan under a second counts as one), but a full scan of
/// a few small guests here takes a fraction of a second, so scan and CPU times are taken in
/// milliseconds (at least one). Whatever the caller's thread did during the scan (the agent
/// also reclaims and talks to libvirt) counts as the scan's CPU, as everything ksmd does
/// counts in the kernel.
///
/// A value type without I/O: its caller measures the scan and feeds it
/// ``fullScanCompleted(scanTime:cpuTime:tunables:)``; a fresh value is the kernel's state
/// after `set_advisor_defaults`.
public struct ScanTimeAdvisor: Sendable, Equatable {
    /// The previous full scan's wall time in milliseconds (`advisor_ctx.scan_time`); nil
    /// before the first.
    public internal(set) var previousScanMilliseconds: Int?
    /// The moving average of the change of scan time from one scan to the next, in percent
    /// (`advisor_ctx.change`); 0 before the first scan.
    public internal(set) var change = 0

    /// The CPU share the advisor always allows, in percent of one core (the kernel's
    /// `KSM_ADVISOR_MIN_CPU` is 10; see the type's documentation for why 1 here).
    public static let minimumCPUPercent = 1
    /// The weight of the newest scan in the moving average, in percent (`EWMA_WEIGHT`).
    public static let newestScanWeight = 30

    /// The advisor with no scan seen yet.
    public init() {}

    /// One full scan is done: returns the `pages_to_scan` for the next one, and remembers
    /// this scan for the next call.
    ///
    /// - Parameters:
    ///   - scanTime: The scan's wall time, from the end of the previous full scan (time in
    ///     which there was nothing to scan left out).
    ///   - cpuTime: The CPU time the scanning thread used over that time.
    ///   - tunables: The knobs in force: the scan's `pages_to_scan` and the advisor's knobs.
    /// - Returns: At least 1 and at most `advisor_max_pages_to_scan`.
    public mutating func fullScanCompleted(scanTime: Duration, cpuTime: Duration, tunables: Tunables) -> Int {
        let pagesToScan = tunables.pagesToScan
        let scan = max(1, Self.milliseconds(scanTime))
        let cpuPercent = max(1, Self.times(Self.milliseconds(cpuTime), 100) / scan)
        let previous = previousScanMilliseconds ?? scan

        // The target as a percentage of this scan's time.
        let factor = max(1, Self.times(tunables.advisorTargetScanTime, 100_000) / scan)
        // This scan's time as a percentage of the previous one's, averaged.
        let newest = max(1, Self.times(scan, 100) / previous)
        let weight = Self.newestScanWeight
        let change = Self.plus(Self.times(100 - weight, self.change), Self.times(weight, newest)) / 100

        var pages = Self.times(pagesToScan, 100) / factor
        pages = Self.times(pages, change) / 100

        // Pages per percent of a core, from this scan; the budget's bounds.
        let perPercent = max(1, pagesToScan / cpuPercent)
        pages = min(pages, Self.times(perPercent, tunables.advisorMaxCPU))
        pages = max(pages, Self.times(perPercent, Self.minimumCPUPercent))
        pages = min(pages, tunables.advisorMaxPagesToScan)

        self.change = change
        previousScanMilliseconds = scan
        return max(1, pages)
    }

    /// Whole milliseconds, rounded down; 0 for a negative duration.
    static func milliseconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return 0 }
        return plus(times(Int(seconds), 1000), Int(attoseconds / 1_000_000_000_000_000))
    }

    /// `a * b`, saturating at `Int.max`: the factors are never negative here, and an absurd
    /// input (a scan of years) must give the caps, not a trap.
    static func times(_ a: Int, _ b: Int) -> Int {
        let (product, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? .max : product
    }

    /// `a + b`, saturating at `Int.max`.
    static func plus(_ a: Int, _ b: Int) -> Int {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? .max : sum
    }
}

import LinuxSystem
import Logging
import SamepageCore
import SamepageModel

/// The scan-time advisor's driver: where ksmd calls `advisor_start_scan` and
/// `advisor_stop_scan`, the agent's loop measures every full scan (wall time and this
/// thread's own CPU time, ``FullScanStopwatch``), publishes it, and, while
/// `advisor_mode = "scan-time"`, feeds it to the ``ScanTimeAdvisor`` and sets the
/// `pages_to_scan` it returns before the next batch.
///
/// Its own room: the advisor, the stopwatch, the last full scan and whether the CPU clock
/// failed are read by nothing else (the snapshot reads ``lastFullScan``). The engine is
/// passed to each call, and the clocks can be: a test drives it with readings of its own.
struct AdvisorDriver {
    let logger: Logger
    private(set) var advisor = ScanTimeAdvisor()
    private var stopwatch = FullScanStopwatch()
    /// What the last full scan cost, as published.
    private(set) var lastFullScan: FullScanTime?
    /// The thread's CPU clock could not be read (said once).
    private var cpuClockFailed = false

    init(logger: Logger) {
        self.logger = logger
    }

    /// Applies knobs asked for by a request or a reloaded file. While the advisor is on in
    /// both, `pages_to_scan` stays the advisor's; a change of mode starts the advisor afresh
    /// (`set_advisor_defaults`: the request already carries the reset `pages_to_scan`).
    mutating func apply(_ requested: Tunables, to engine: Engine) {
        let tunables = engine.tunables.applying(requested)
        if tunables.advisorMode != engine.tunables.advisorMode {
            advisor = ScanTimeAdvisor()
            logger.info("advisor_mode = \(tunables.advisorMode.name); pages_to_scan = \(tunables.pagesToScan)")
        }
        do {
            try engine.setTunables(tunables)
        } catch {
            logger.error("tunables refused: \(error)")
        }
    }

    /// Forgets the full scan under way (the engine starts its full scan over, as after `unmerge`).
    mutating func discardScan() { stopwatch.discardScan() }

    /// After every batch: reads the clocks (`now`, and `cpuTime`, this thread's CPU time)
    /// and, at the end of a full scan, keeps what it cost and lets the advisor set
    /// `pages_to_scan` on `engine`.
    ///
    /// - Returns: Whether the batch completed a full scan that read pages (the knobs may
    ///   have changed: the agent settles them).
    mutating func measureBatch(
        _ report: BatchReport, engine: Engine, now: ContinuousClock.Instant = .now,
        cpuTime readCPUTime: () throws(SystemError) -> Duration = { () throws(SystemError) in try threadCPUTime() }
    ) -> Bool {
        let cpuTime: Duration
        do {
            cpuTime = try readCPUTime()
        } catch {
            if !cpuClockFailed { logger.error("the advisor cannot measure: \(error)") }
            cpuClockFailed = true
            return false
        }
        guard let scan = stopwatch.batchEnded(
            at: now, cpuTime: cpuTime, pagesScanned: report.pagesScanned,
            fullScansCompleted: report.fullScansCompleted)
        else { return false }
        let seconds = scan.wallTime.inSeconds
        lastFullScan = FullScanTime(
            seconds: seconds, cpuPercent: seconds > 0 ? scan.cpuTime.inSeconds / seconds * 100 : 0)
        guard engine.tunables.advisorMode == .scanTime else { return true }

        var tunables = engine.tunables
        tunables.pagesToScan = advisor.fullScanCompleted(
            scanTime: scan.wallTime, cpuTime: scan.cpuTime, tunables: tunables)
        logger.debug(
            "advisor: full scan of \(scan.pages) pages in \(seconds) s at \(lastFullScan?.cpuPercent ?? 0)% CPU; pages_to_scan \(engine.tunables.pagesToScan) -> \(tunables.pagesToScan)")
        do {
            try engine.setTunables(tunables)
        } catch {
            logger.error("advisor: \(error)")
        }
        return true
    }
}

import LinuxSystem
import SamepageCore
import SamepageModel

/// The scan-time advisor's driver: where ksmd calls `advisor_start_scan` and
/// `advisor_stop_scan`, the agent's loop measures every full scan (wall time and this
/// thread's own CPU time, ``FullScanStopwatch``), publishes it, and, while
/// `advisor_mode = "scan-time"`, feeds it to the ``ScanTimeAdvisor`` and sets the
/// `pages_to_scan` it returns before the next batch.
extension Worker {
    /// Applies knobs asked for by a request or a reloaded file. While the advisor is on in
    /// both, `pages_to_scan` stays the advisor's; a change of mode starts the advisor afresh
    /// (`set_advisor_defaults`: the request already carries the reset `pages_to_scan`).
    func applyTunables(_ requested: Tunables) {
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

    /// After every batch: reads the clocks and, at the end of a full scan, publishes what it
    /// cost and lets the advisor set `pages_to_scan`.
    ///
    /// - Returns: Whether the batch completed a full scan that read pages.
    func measureBatch(_ report: BatchReport) -> Bool {
        let cpuTime: Duration
        do {
            cpuTime = try threadCPUTime()
        } catch {
            if !cpuClockFailed { logger.error("the advisor cannot measure: \(error)") }
            cpuClockFailed = true
            return false
        }
        guard let scan = stopwatch.batchEnded(
            at: .now, cpuTime: cpuTime, pagesScanned: report.pagesScanned,
            fullScansCompleted: report.fullScansCompleted)
        else { return false }
        defer { agent.settle(engine.tunables) }
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

import Foundation
import SamepageCore
import SamepageModel

/// What `stats`, `tune` and `dominfo` print about the engine, as aligned key-value blocks:
/// the kernel's names for counters and knobs, the run mode and switches by the names
/// `samepage run` and `samepage tune` take, sizes in binary units.
public enum StatsText {
    /// The width of the key column under a `saves` line ("saves" and 12 spaces), which the
    /// counters below it line up with in `stats` and `scan`.
    public static let savingsKeyWidth = 17

    /// `stats` below its savings line and the counters: the run mode and tunables, the last
    /// full scan and the daemon's own figures; a blank line; reclaim. Each block aligned.
    public static func lines(_ s: DaemonStats) -> [String] {
        let fullScan = s.lastFullScan.map {
            String(format: "%.1f s at %.1f%% CPU", $0.seconds, $0.cpuPercent)
        } ?? "none completed yet"
        let daemon = KeyValueLines([
            ("run", s.run.name),
        ]) + tunables(s.tunables) + KeyValueLines([
            ("full_scan", fullScan),
            ("tracking_memory", bytesText(s.trackingBytes)),
            ("scan_rate", "\(Int(s.scanRate.rounded())) pages/s"),
            ("guests", "\(s.guests) (\(s.guestsMapped) mapped)"),
            ("libvirt", !s.libvirtConfigured ? "off (libvirt.uri = \"\")" : s.connected ? "connected" : "disconnected: \(s.connectionError ?? "")"),
        ])
        return daemon.lines() + [""] + reclaim(s.reclaim).lines()
    }

    /// The kernel-named counters; those that count pages in a state also in bytes.
    public static func counters(_ counters: Counters) -> KeyValueLines {
        let inBytes: Set<Counters.CodingKeys> = [.pagesShared, .pagesSharing, .pagesUnshared, .pagesVolatile, .zeroPages]
        return KeyValueLines(Counters.CodingKeys.allCases.map { key in
            let value = counters[key]
            return (key.rawValue, inBytes.contains(key) ? "\(value) (\(pagesText(value)))" : "\(value)")
        })
    }

    /// The engine's tunables under their kernel names, as `stats` and `tune` show them.
    public static func tunables(_ t: Tunables) -> KeyValueLines {
        let advised = t.advisorMode == .scanTime ? " (set by the advisor)" : ""
        return KeyValueLines([
            ("pages_to_scan", "\(t.pagesToScan)\(advised)"),
            ("sleep_millisecs", "\(t.sleepMillisecs)"),
            ("max_kernel_pages", t.maxKernelPages == 0 ? "0 (unlimited)" : "\(t.maxKernelPages)"),
            ("max_page_sharing", t.maxPageSharing == 0 ? "0 (unlimited)" : "\(t.maxPageSharing)"),
            ("smart_scan", t.smartScan ? "on" : "off"),
            ("advisor_mode", t.advisorMode.name),
            ("advisor_target_scan_time", "\(t.advisorTargetScanTime) s"),
            ("advisor_max_cpu", "\(t.advisorMaxCPU)%"),
            ("advisor_min_pages_to_scan", "\(t.advisorMinPagesToScan)"),
            ("advisor_max_pages_to_scan", "\(t.advisorMaxPagesToScan)"),
        ])
    }

    /// Zero-page reclaim: pages and bytes, pauses with their percentiles (upper bounds from
    /// the histogram's buckets) and the buckets, deferrals, and what is wrong now.
    public static func reclaim(_ r: ReclaimStatus) -> KeyValueLines {
        let pauses = PauseHistogram(counts: r.pauseHistogram)
        let seen = PauseHistogram(counts: r.guestSeenPauseHistogram)
        var pairs: [(String, String)] = [
            ("zero_pages_reclaimed", "\(r.zeroPagesReclaimed) (\(pagesText(r.zeroPagesReclaimed)))"),
            ("bytes_reclaimed", bytesText(r.bytesReclaimed)),
            ("zero_pages_refaulted", "\(r.zeroPagesRefaulted)"),
            ("pages_held", "\(r.pagesHeld) (\(pagesText(r.pagesHeld)))"),
            ("pauses", "\(r.pauses) (\(milliseconds(r.pauseMillisecondsTotal)) in all, \(r.pauseOverruns) over budget)"),
            ("pause_percentiles", pauses.percentilesText + (pauses.total > 0 ? " (bucket upper bounds)" : "")),
            ("pause_histogram_ms", pauses.bucketsText),
            ("guest_seen_pauses", "\(r.guestSeenPauses) (\(milliseconds(r.guestSeenPauseMillisecondsTotal)) in all, \(r.guestSeenOverruns) over budget)"),
            ("guest_seen_percentiles", seen.percentilesText + (seen.total > 0 ? " (bucket upper bounds)" : "")),
            ("guest_seen_histogram_ms", seen.bucketsText),
            ("pauses_stopped_early", "\(r.pausesStoppedEarly)"),
            ("deferrals", "cpu_pressure \(r.deferralsForCPUPressure), pause_cost \(r.deferralsForPauseCost), monitor_busy \(r.deferralsForMonitorBusy)"),
        ]
        if let deferred = r.deferred { pairs.append(("DEFERRED", "\(deferred.reason.rawValue): \(deferred.detail)")) }
        if let failure = r.resumeFailure { pairs.append(("RESUME FAILING", "\(failure) (retried with backoff)")) }
        return KeyValueLines(pairs)
    }

    /// Milliseconds with one decimal: "21.5 ms".
    static func milliseconds(_ ms: Double) -> String { String(format: "%.1f ms", ms) }
}

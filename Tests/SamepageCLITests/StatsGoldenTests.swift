import SamepageCLI
import SamepageCore
import SamepageModel
import Testing

/// What `stats`, `tune` and `dominfo` print about the engine, from fixed values, against text
/// written out by hand.
@Suite struct StatsGoldenTests {
    @Test("Reclaim: sizes in binary units, pause percentiles from the buckets, keys aligned")
    func reclaim() {
        var r = ReclaimStatus()
        r.zeroPagesReclaimed = 4096
        r.bytesReclaimed = 16 << 20
        r.pagesHeld = 4096
        r.pauses = 3
        r.pauseMillisecondsTotal = 21.5
        r.pauseHistogram = [0, 0, 1, 2, 0, 0, 0, 0]
        r.guestSeenPauses = 3
        r.guestSeenPauseMillisecondsTotal = 12.5
        r.guestSeenPauseHistogram = [0, 0, 3, 0, 0, 0, 0, 0]
        r.deferralsForPauseCost = 2
        r.deferred = ReclaimDeferral(.pauseCost, detail: "suspend and resume take 9.0 ms")
        let expected = """
            zero_pages_reclaimed     4096 (16 MiB)
            bytes_reclaimed          16 MiB
            zero_pages_refaulted     0
            pages_held               4096 (16 MiB)
            pauses                   3 (21.5 ms in all, 0 over budget)
            pause_percentiles        p50 ≤ 10 ms, p90 ≤ 10 ms, p99 ≤ 10 ms (bucket upper bounds)
            pause_histogram_ms       ≤1:0 ≤2:0 ≤5:1 ≤10:2 ≤20:0 ≤50:0 ≤100:0 +Inf:0
            guest_seen_pauses        3 (12.5 ms in all, 0 over budget)
            guest_seen_percentiles   p50 ≤ 5 ms, p90 ≤ 5 ms, p99 ≤ 5 ms (bucket upper bounds)
            guest_seen_histogram_ms  ≤1:0 ≤2:0 ≤5:3 ≤10:0 ≤20:0 ≤50:0 ≤100:0 +Inf:0
            pauses_stopped_early     0
            deferrals                cpu_pressure 0, pause_cost 2, monitor_busy 0
            DEFERRED                 pause_cost: suspend and resume take 9.0 ms
            """
        #expect(StatsText.reclaim(r).lines().joined(separator: "\n") == expected)
    }

    @Test("Tunables: switches as on/off, the advisor's mode by name")
    func tunables() {
        let t = Tunables(pagesToScan: 2750, advisorMode: .scanTime)
        let expected = """
            pages_to_scan              2750 (set by the advisor)
            sleep_millisecs            20
            max_kernel_pages           0 (unlimited)
            max_page_sharing           256
            smart_scan                 on
            advisor_mode               scan-time
            advisor_target_scan_time   200 s
            advisor_max_cpu            70%
            advisor_min_pages_to_scan  500
            advisor_max_pages_to_scan  30000
            """
        #expect(StatsText.tunables(t).lines().joined(separator: "\n") == expected)
    }

    @Test("stats: the run mode by name, tracking memory in binary units, each block in one column")
    func stats() {
        let s = DaemonStats(
            counters: Counters(), run: .merge, tunables: Tunables(smartScan: false), trackingBytes: 1 << 20,
            connected: true, guests: 2, guestsMapped: 1)
        let lines = StatsText.lines(s)
        #expect(lines.contains("run                        merge"))
        #expect(lines.contains("smart_scan                 off"))
        #expect(lines.contains("tracking_memory            1 MiB"))
        #expect(lines.contains("guests                     2 (1 mapped)"))
        #expect(lines.contains("pause_percentiles        none"))
        #expect(!lines.contains { $0.hasPrefix("run ") && $0.hasSuffix(" 1") })
        // Two blocks, a blank line between them. In the first every value starts in column 28,
        // after the longest key, advisor_min_pages_to_scan, and two spaces; in the second
        // (reclaim) in column 26, after guest_seen_histogram_ms.
        let blank = lines.firstIndex(of: "")!
        for (block, column) in [(lines[..<blank], 27), (lines[(blank + 1)...], 25)] {
            for line in block {
                let key = line.prefix { $0 != " " }
                #expect(line.dropFirst(column).first != " ", "\(line)")
                #expect(line.prefix(column).dropFirst(key.count).allSatisfy { $0 == " " }, "\(line)")
            }
        }
    }

    @Test("Counters: those that count pages also in bytes, lined up with the 'saves' line above them")
    func counters() {
        var c = Counters()
        c.pagesShared = 10
        c.pagesSharing = 256
        c.fullScans = 3
        c.pagesScanned = 786_432
        c.zeroPages = 262_144
        let expected = """
            pages_shared     10 (40 KiB)
            pages_sharing    256 (1 MiB)
            pages_unshared   0 (0 B)
            pages_volatile   0 (0 B)
            full_scans       3
            pages_scanned    786432
            pages_skipped    0
            zero_pages       262144 (1 GiB)
            merges_refused   0
            """
        let lines = StatsText.counters(c).lines(minimumWidth: StatsText.savingsKeyWidth)
        #expect(lines.joined(separator: "\n") == expected)
        // `stats` and `scan` print "saves" and 12 spaces before the savings summary.
        #expect("saves            ".count == StatsText.savingsKeyWidth)
        #expect(lines.allSatisfy { $0.dropFirst(17).first != " " && $0.dropFirst(16).first == " " })
    }

    @Test("Percentiles are the upper bounds of the buckets that hold them")
    func percentiles() {
        let spread = PauseHistogram(counts: [50, 30, 10, 5, 3, 1, 0, 1])
        #expect(spread.upperBound(percentile: 50) == 1)
        #expect(spread.upperBound(percentile: 90) == 5)
        #expect(spread.upperBound(percentile: 99) == 50)
        #expect(spread.upperBound(percentile: 100) == .infinity)
        #expect(spread.percentilesText == "p50 ≤ 1 ms, p90 ≤ 5 ms, p99 ≤ 50 ms")
        let slow = PauseHistogram(counts: [0, 0, 0, 0, 0, 0, 0, 2])
        #expect(slow.percentilesText == "p50 > 100 ms, p90 > 100 ms, p99 > 100 ms")
        let none = PauseHistogram(counts: [0, 0, 0, 0, 0, 0, 0, 0])
        #expect(none.upperBound(percentile: 50) == nil)
        #expect(none.percentilesText == "none")
    }
}

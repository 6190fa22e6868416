import SamepageCore
import SamepageModel
import SamepageMetrics
import Testing

/// The exposition text as samples: `name{label="value",...}` (labels sorted) to value, and
/// each family's `# TYPE`.
struct Exposition {
    var samples: [String: Double] = [:]
    var types: [String: String] = [:]

    init(_ bytes: [UInt8]) {
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                types[String(parts[2])] = String(parts[3])
                continue
            }
            if line.hasPrefix("#") { continue }
            let space = line.lastIndex(of: " ")!
            let key = Self.normalize(String(line[..<space]))
            samples[key] = Double(line[line.index(after: space)...])!
        }
    }

    /// Sorts the labels so keys compare regardless of the order they were written in.
    static func normalize(_ series: String) -> String {
        guard let open = series.firstIndex(of: "{") else { return series }
        let name = series[..<open]
        let inner = series[series.index(after: open)..<series.index(before: series.endIndex)]
        let labels = inner.split(separator: ",").map(String.init).sorted()
        return "\(name){\(labels.joined(separator: ","))}"
    }

    subscript(_ series: String) -> Double? { samples[Self.normalize(series)] }
}

func guest(_ name: String, uuid: String, group: String?, scanned: Int, shared: Int, reclaimed: Int) -> GuestStatus {
    var counters = Counters()
    counters.pagesScanned = scanned
    counters.pagesShared = shared
    counters.pagesSharing = 2 * shared
    counters.fullScans = 3
    var reclaim = ReclaimStatus()
    reclaim.zeroPagesReclaimed = reclaimed
    reclaim.bytesReclaimed = reclaimed * 4096
    reclaim.pagesHeld = reclaimed - 1
    reclaim.eligible = true
    return GuestStatus(
        name: name, uuid: uuid, state: "running", mapped: true, reason: nil, mode: .merge, trustGroup: group,
        backend: "memfd", counters: counters, reclaim: reclaim)
}

@Suite("Prometheus exporter")
struct MetricsExporterTests {
    let a = "00000000-0000-0000-0000-00000000000a"
    let b = "00000000-0000-0000-0000-00000000000b"

    @Test("Global and per-guest series carry the snapshot's values, kernel names and types")
    func valuesFromSnapshot() {
        var snapshot = AgentSnapshot()
        snapshot.connected = true
        snapshot.counters.pagesShared = 7
        snapshot.counters.pagesSharing = 11
        snapshot.counters.pagesScanned = 123_456
        snapshot.counters.mergesRefused = 2
        snapshot.trackingBytes = 4096
        snapshot.scanRate = 1500.5
        snapshot.run = .stop
        snapshot.reclaim.zeroPagesReclaimed = 300
        snapshot.guests = [
            guest("alpha", uuid: a, group: "web", scanned: 100_000, shared: 5, reclaimed: 200),
            guest("beta", uuid: b, group: nil, scanned: 23_456, shared: 2, reclaimed: 100),
        ]
        let metrics = Exposition(MetricsExporter(version: "9.9").render(snapshot, residentBytes: 1 << 20, cpuSeconds: 2.25))

        #expect(metrics["samepage_pages_shared"] == 7)
        #expect(metrics["samepage_pages_sharing"] == 11)
        #expect(metrics["samepage_pages_scanned_total"] == 123_456)
        #expect(metrics["samepage_merges_refused_total"] == 2)
        #expect(metrics["samepage_tracking_bytes"] == 4096)
        #expect(metrics["samepage_scan_rate_pages_per_second"] == 1500.5)
        #expect(metrics["samepage_run"] == 0)
        #expect(metrics["samepage_libvirt_connected"] == 1)
        #expect(metrics["samepage_guests"] == 2)
        #expect(metrics["samepage_process_resident_memory_bytes"] == Double(1 << 20))
        #expect(metrics["samepage_process_cpu_seconds_total"] == 2.25)
        #expect(metrics["samepage_zero_pages_reclaimed_total"] == 300)
        #expect(metrics[#"samepage_build_info{version="9.9"}"#] == 1)

        let alpha = #"guest="alpha",uuid="\#(a)",trust_group="web""#
        let beta = #"guest="beta",uuid="\#(b)",trust_group="""#
        #expect(metrics["samepage_guest_pages_scanned_total{\(alpha)}"] == 100_000)
        #expect(metrics["samepage_guest_pages_scanned_total{\(beta)}"] == 23_456)
        #expect(metrics["samepage_guest_pages_sharing{\(alpha)}"] == 10)
        #expect(metrics["samepage_guest_full_scans_total{\(beta)}"] == 3)
        #expect(metrics["samepage_guest_reclaimed_bytes_total{\(alpha)}"] == Double(200 * 4096))
        #expect(metrics["samepage_guest_reclaim_held_pages{\(beta)}"] == 99)
        #expect(metrics["samepage_guest_reclaim_eligible{\(alpha)}"] == 1)
        #expect(metrics["samepage_guest_mapped{\(alpha)}"] == 1)
        // Every guest has a (still empty) pause histogram.
        #expect(metrics[#"samepage_guest_reclaim_pause_seconds_count{\#(beta)}"#] == 0)

        #expect(metrics.types["samepage_pages_shared"] == "gauge")
        #expect(metrics.types["samepage_pages_scanned_total"] == "counter")
        #expect(metrics.types["samepage_guest_zero_pages_reclaimed_total"] == "counter")
        #expect(metrics.types["samepage_reclaim_pause_seconds"] == "histogram")
        #expect(metrics.types["samepage_process_cpu_seconds_total"] == "counter")
    }

    @Test("The process's CPU seconds grow with the work it does; unknown, the series is left out")
    func processCPUSecondsCounter() throws {
        let before = try #require(processCPUSeconds())
        // About 50 ms of CPU in this thread, at least the 1 ms getrusage can tell apart.
        let clock = ContinuousClock()
        let start = clock.now
        var x: UInt64 = 1
        while clock.now - start < .milliseconds(50) {
            for _ in 0..<10_000 { x = x &* 6364136223846793005 &+ 1442695040888963407 }
        }
        let after = try #require(processCPUSeconds())
        #expect(x != 0)
        #expect(after - before >= 0.01, "CPU seconds went from \(before) to \(after) over 50 ms of busy work")

        #expect(Exposition(MetricsExporter(version: "1").render(AgentSnapshot(), cpuSeconds: after))["samepage_process_cpu_seconds_total"] == after)
        #expect(Exposition(MetricsExporter(version: "1").render(AgentSnapshot()))["samepage_process_cpu_seconds_total"] == nil)
    }

    @Test("The scan rate's knobs: pages_to_scan, the advisor's mode and target, the last full scan")
    func advisorSeries() {
        var snapshot = AgentSnapshot()
        snapshot.tunables = Tunables(pagesToScan: 2750, advisorMode: .scanTime, advisorTargetScanTime: 90)
        let exporter = MetricsExporter(version: "9.9")
        // No full scan yet: its series are not there.
        var metrics = Exposition(exporter.render(snapshot))
        #expect(metrics["samepage_pages_to_scan"] == 2750)
        #expect(metrics["samepage_advisor_mode"] == 1)
        #expect(metrics["samepage_advisor_target_scan_time_seconds"] == 90)
        #expect(metrics["samepage_last_full_scan_seconds"] == nil)
        #expect(metrics.types["samepage_pages_to_scan"] == "gauge")

        snapshot.lastFullScan = FullScanTime(seconds: 187.25, cpuPercent: 42.5)
        snapshot.tunables = Tunables(pagesToScan: 64, advisorMode: .off)
        metrics = Exposition(exporter.render(snapshot))
        #expect(metrics["samepage_last_full_scan_seconds"] == 187.25)
        // 42.5% of a core is 0.425 cores.
        #expect(metrics["samepage_last_full_scan_cpu_ratio"] == 0.425)
        #expect(metrics["samepage_pages_to_scan"] == 64)
        #expect(metrics["samepage_advisor_mode"] == 0)
    }

    @Test("A counter follows its total across scrapes, down too (a reset)")
    func countersTrackTotals() {
        let exporter = MetricsExporter(version: "1")
        var snapshot = AgentSnapshot()
        snapshot.counters.pagesScanned = 10
        #expect(Exposition(exporter.render(snapshot))["samepage_pages_scanned_total"] == 10)
        snapshot.counters.pagesScanned = 25
        #expect(Exposition(exporter.render(snapshot))["samepage_pages_scanned_total"] == 25)
        snapshot.counters.pagesScanned = 4
        #expect(Exposition(exporter.render(snapshot))["samepage_pages_scanned_total"] == 4)
    }

    @Test("Pauses land in the same buckets as the snapshot's pause_histogram, globally and per guest")
    func pauseHistogram() {
        let exporter = MetricsExporter(version: "1")
        let identity = GuestIdentity(name: "alpha", uuid: a)
        var status = ReclaimStatus()
        // Bucket edges included: a pause of exactly 5 ms is in the 5 ms bucket in both.
        let lengths = [0.4, 1.0, 1.5, 5.0, 5.0001, 9.99, 10, 42, 250]
        for ms in lengths {
            exporter.record(ReclaimPause(guest: identity, trustGroup: "web", milliseconds: ms))
            status.record(pauseMilliseconds: ms, overrun: false)
        }
        var snapshot = AgentSnapshot()
        snapshot.guests = [guest("alpha", uuid: a, group: "web", scanned: 1, shared: 0, reclaimed: 1)]
        let metrics = Exposition(exporter.render(snapshot))

        let labels = #"guest="alpha",uuid="\#(a)",trust_group="web""#
        var cumulative = 0
        for (bound, count) in zip(ReclaimStatus.histogramBoundsMs, status.pauseHistogram) {
            cumulative += count
            let le = bound.isFinite ? "\(bound / 1000)" : "+Inf"
            #expect(metrics[#"samepage_reclaim_pause_seconds_bucket{le="\#(le)"}"#] == Double(cumulative), "le=\(le)")
            #expect(metrics[#"samepage_guest_reclaim_pause_seconds_bucket{\#(labels),le="\#(le)"}"#] == Double(cumulative), "le=\(le)")
        }
        #expect(metrics["samepage_reclaim_pause_seconds_count"] == Double(lengths.count))
        let sum = try! #require(metrics["samepage_reclaim_pause_seconds_sum"])
        #expect(abs(sum - lengths.reduce(0, +) / 1000) < 1e-9)
    }

    @Test("A guest that leaves loses its series; a changed trust group moves them to the new labels")
    func guestSeriesFollowTheSnapshot() {
        let exporter = MetricsExporter(version: "1")
        var snapshot = AgentSnapshot()
        snapshot.guests = [
            guest("alpha", uuid: a, group: "web", scanned: 5, shared: 1, reclaimed: 1),
            guest("beta", uuid: b, group: nil, scanned: 6, shared: 1, reclaimed: 1),
        ]
        _ = exporter.render(snapshot)
        snapshot.guests = [guest("alpha", uuid: a, group: "db", scanned: 8, shared: 1, reclaimed: 1)]
        let text = String(decoding: exporter.render(snapshot), as: UTF8.self)
        let metrics = Exposition(Array(text.utf8))
        #expect(!text.contains(#"guest="beta""#))
        #expect(!text.contains(#"trust_group="web""#))
        #expect(metrics[#"samepage_guest_pages_scanned_total{guest="alpha",uuid="\#(a)",trust_group="db"}"#] == 8)
        #expect(metrics["samepage_guests"] == 1)
    }
}

import Foundation
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
    reclaim.pagesHeld = max(0, reclaimed - 1)
    reclaim.eligible = true
    return GuestStatus(
        name: name, uuid: uuid, state: "running", mapped: true, reason: nil, mode: .merge, trustGroup: group,
        backend: "memfd", counters: counters,
        regions: [RegionStatus(backend: "pc.ram", kind: "memfd", path: nil, bytes: 1 << 30, pages: 1 << 18)], reclaim: reclaim)
}

@Suite("Prometheus exporter")
struct MetricsExporterTests {
    let a = "00000000-0000-0000-0000-00000000000a"
    let b = "00000000-0000-0000-0000-00000000000b"

    @Test("Global and per-guest series carry the snapshot's values, in bytes, with the naming guide's types")
    func valuesFromSnapshot() {
        var snapshot = AgentSnapshot()
        snapshot.connected = true
        snapshot.counters.pagesShared = 7
        snapshot.counters.pagesSharing = 11
        snapshot.counters.pagesScanned = 123_456
        snapshot.counters.mergesRefused = 2
        snapshot.counters.fullScans = 5
        snapshot.trackingBytes = 4096
        snapshot.run = .stop
        snapshot.reclaim.zeroPagesReclaimed = 300
        snapshot.reclaim.pagesHeld = 250
        snapshot.guests = [
            guest("alpha", uuid: a, group: "web", scanned: 100_000, shared: 5, reclaimed: 200),
            guest("beta", uuid: b, group: nil, scanned: 23_456, shared: 2, reclaimed: 100),
        ]
        let metrics = Exposition(MetricsExporter(version: "9.9").render(snapshot))

        // Pages of 4 KiB, written as bytes.
        #expect(metrics["samepage_shared_bytes"] == 28_672)
        #expect(metrics["samepage_sharing_bytes"] == 45_056)
        #expect(metrics["samepage_scanned_bytes_total"] == 505_675_776)
        #expect(metrics["samepage_full_scans_total"] == 5)
        #expect(metrics["samepage_merges_refused_total"] == 2)
        #expect(metrics["samepage_tracking_bytes"] == 4096)
        #expect(metrics["samepage_reclaim_punched_bytes_total"] == 1_228_800)
        #expect(metrics["samepage_reclaim_held_bytes"] == 1_024_000)
        #expect(metrics["samepage_libvirt_connected"] == 1)
        #expect(metrics["samepage_guests"] == 2)
        // Two guests of 1 GiB each, both mapped.
        #expect(metrics["samepage_mapped_ram_bytes"] == 2_147_483_648)
        #expect(metrics[#"samepage_build_info{version="9.9"}"#] == 1)
        // Old names are gone: no pages as a unit, no enum as a number.
        #expect(metrics["samepage_pages_sharing"] == nil)
        #expect(metrics["samepage_reclaim_held_pages"] == nil)
        #expect(metrics["samepage_run"] == nil)

        let alpha = #"uuid="\#(a)""#
        let beta = #"uuid="\#(b)""#
        #expect(metrics["samepage_guest_scanned_bytes_total{\(alpha)}"] == 409_600_000)
        #expect(metrics["samepage_guest_scanned_bytes_total{\(beta)}"] == 96_075_776)
        #expect(metrics["samepage_guest_sharing_bytes{\(alpha)}"] == 40_960)
        #expect(metrics["samepage_guest_full_scans_total{\(beta)}"] == 3)
        #expect(metrics["samepage_guest_reclaimed_bytes_total{\(alpha)}"] == 819_200)
        #expect(metrics["samepage_guest_reclaim_held_bytes{\(beta)}"] == 405_504)
        #expect(metrics["samepage_guest_ram_bytes{\(alpha)}"] == 1_073_741_824)
        #expect(metrics["samepage_guest_reclaim_eligible{\(alpha)}"] == 1)
        #expect(metrics["samepage_guest_mapped{\(alpha)}"] == 1)
        #expect(metrics[#"samepage_guest_info{uuid="\#(a)",name="alpha",mode="merge",trust_group="web",source="libvirt",vmid=""}"#] == 1)
        #expect(metrics[#"samepage_guest_info{uuid="\#(b)",name="beta",mode="merge",trust_group="",source="libvirt",vmid=""}"#] == 1)
        // Every guest has a (still empty) pause histogram.
        #expect(metrics[#"samepage_guest_reclaim_pause_seconds_count{\#(beta)}"#] == 0)

        #expect(metrics.types["samepage_shared_bytes"] == "gauge")
        #expect(metrics.types["samepage_scanned_bytes_total"] == "counter")
        #expect(metrics.types["samepage_guest_reclaim_punched_bytes_total"] == "counter")
        #expect(metrics.types["samepage_reclaim_pause_seconds"] == "histogram")
        #expect(metrics.types["samepage_guest_info"] == "gauge")
    }

    @Test("Enums are one series per state, 1 for the state in force")
    func enumsAsStates() {
        var snapshot = AgentSnapshot()
        snapshot.run = .unmerge
        snapshot.tunables = Tunables(pagesToScan: 2750, advisorMode: .scanTime, advisorTargetScanTime: 90)
        snapshot.kernelKSM.run = 1
        let metrics = Exposition(MetricsExporter(version: "1").render(snapshot))
        #expect(metrics[#"samepage_run_state{state="stop"}"#] == 0)
        #expect(metrics[#"samepage_run_state{state="merge"}"#] == 0)
        #expect(metrics[#"samepage_run_state{state="unmerge"}"#] == 1)
        #expect(metrics[#"samepage_advisor_state{state="none"}"#] == 0)
        #expect(metrics[#"samepage_advisor_state{state="scan-time"}"#] == 1)
        #expect(metrics[#"samepage_kernel_ksm_run_state{state="merge"}"#] == 1)
        #expect(metrics[#"samepage_kernel_ksm_run_state{state="stop"}"#] == 0)
        #expect(metrics["samepage_pages_to_scan"] == 2750)
        #expect(metrics["samepage_advisor_target_scan_time_seconds"] == 90)
        // No full scan yet: its series are not there.
        #expect(metrics["samepage_last_full_scan_seconds"] == nil)
    }

    @Test("The last full scan's time and CPU, once there was one")
    func lastFullScan() {
        var snapshot = AgentSnapshot()
        snapshot.lastFullScan = FullScanTime(seconds: 187.25, cpuPercent: 42.5)
        let metrics = Exposition(MetricsExporter(version: "1").render(snapshot))
        #expect(metrics["samepage_last_full_scan_seconds"] == 187.25)
        // 42.5% of a core is 0.425 cores.
        #expect(metrics["samepage_last_full_scan_cpu_ratio"] == 0.425)
    }

    @Test("The standard process metrics, under their standard names; those unknown left out")
    func processMetrics() throws {
        let process = ProcessMetrics(
            cpuSeconds: 2.25, residentBytes: 1 << 20, virtualBytes: 1 << 30, openFDs: 12, maxFDs: 1024, startTimeSeconds: 1_700_000_000)
        let metrics = Exposition(MetricsExporter(version: "1").render(AgentSnapshot(), process: process))
        #expect(metrics["process_cpu_seconds_total"] == 2.25)
        #expect(metrics["process_resident_memory_bytes"] == 1_048_576)
        #expect(metrics["process_virtual_memory_bytes"] == 1_073_741_824)
        #expect(metrics["process_open_fds"] == 12)
        #expect(metrics["process_max_fds"] == 1024)
        #expect(metrics["process_start_time_seconds"] == 1_700_000_000)
        #expect(metrics.types["process_cpu_seconds_total"] == "counter")
        #expect(metrics["samepage_process_cpu_seconds_total"] == nil)

        let partial = Exposition(MetricsExporter(version: "1").render(AgentSnapshot(), process: ProcessMetrics(openFDs: 3)))
        #expect(partial["process_open_fds"] == 3)
        #expect(partial["process_cpu_seconds_total"] == nil)
    }

    @Test("This process's figures are read: CPU grows with work, descriptors and start time are sane")
    func currentProcess() throws {
        let before = try #require(ProcessMetrics.current().cpuSeconds)
        // About 50 ms of CPU in this thread, at least the 1 ms getrusage can tell apart.
        let clock = ContinuousClock()
        let start = clock.now
        var x: UInt64 = 1
        while clock.now - start < .milliseconds(50) {
            for _ in 0..<10_000 { x = x &* 6364136223846793005 &+ 1442695040888963407 }
        }
        let now = ProcessMetrics.current()
        let after = try #require(now.cpuSeconds)
        #expect(x != 0)
        #expect(after - before >= 0.01, "CPU seconds went from \(before) to \(after) over 50 ms of busy work")
        // stdin, stdout and stderr at least; within the limit.
        let open = try #require(now.openFDs)
        #expect(open >= 3)
        #expect(open <= (now.maxFDs ?? 0))
        // Started before now, and after 2020-01-01.
        let started = try #require(now.startTimeSeconds)
        #expect(started > 1_577_836_800)
        #expect(started <= Date().timeIntervalSince1970 + 1)
        #expect((now.residentBytes ?? 0) > 0)
        #expect((now.virtualBytes ?? 0) >= (now.residentBytes ?? .max))
    }

    @Test("A counter follows its total across scrapes, down too (a reset)")
    func countersTrackTotals() {
        let exporter = MetricsExporter(version: "1")
        var snapshot = AgentSnapshot()
        snapshot.counters.fullScans = 10
        #expect(Exposition(exporter.render(snapshot))["samepage_full_scans_total"] == 10)
        snapshot.counters.fullScans = 25
        #expect(Exposition(exporter.render(snapshot))["samepage_full_scans_total"] == 25)
        snapshot.counters.fullScans = 4
        #expect(Exposition(exporter.render(snapshot))["samepage_full_scans_total"] == 4)
    }

    @Test("Pauses land in the same buckets as the snapshot's pause_histogram, globally and per guest")
    func pauseHistogram() throws {
        let exporter = MetricsExporter(version: "1")
        let identity = GuestIdentity(name: "alpha", uuid: a)
        var status = ReclaimStatus()
        // Bucket edges included: a pause of exactly 5 ms is in the 5 ms bucket in both.
        let lengths = [0.4, 1.0, 1.5, 5.0, 5.0001, 9.99, 10, 42, 250]
        for ms in lengths {
            exporter.record(ReclaimPause(guest: identity, trustGroup: "web", milliseconds: ms, guestSeenMilliseconds: ms))
            status.record(pauseMilliseconds: ms, overrun: false)
        }
        var snapshot = AgentSnapshot()
        snapshot.guests = [guest("alpha", uuid: a, group: "web", scanned: 1, shared: 0, reclaimed: 1)]
        let metrics = Exposition(exporter.render(snapshot))

        let labels = #"uuid="\#(a)""#
        var cumulative = 0
        for (bound, count) in zip(ReclaimStatus.histogramBoundsMs, status.pauseHistogram) {
            cumulative += count
            let le = bound.isFinite ? "\(bound / 1000)" : "+Inf"
            #expect(metrics[#"samepage_reclaim_pause_seconds_bucket{le="\#(le)"}"#] == Double(cumulative), "le=\(le)")
            #expect(metrics[#"samepage_reclaim_guest_seen_pause_seconds_bucket{le="\#(le)"}"#] == Double(cumulative), "le=\(le)")
            #expect(metrics[#"samepage_guest_reclaim_pause_seconds_bucket{\#(labels),le="\#(le)"}"#] == Double(cumulative), "le=\(le)")
        }
        #expect(metrics["samepage_reclaim_pause_seconds_count"] == 9)
        let sum = try #require(metrics["samepage_reclaim_pause_seconds_sum"])
        #expect(abs(sum - 0.3248901) < 1e-9)
    }

    @Test("Per-guest series are labelled by uuid alone: a policy change moves only the info series; a guest that leaves loses them")
    func guestSeriesFollowTheSnapshot() {
        let exporter = MetricsExporter(version: "1")
        exporter.record(ReclaimPause(guest: GuestIdentity(name: "beta", uuid: b), trustGroup: nil, milliseconds: 3))
        var snapshot = AgentSnapshot()
        snapshot.guests = [
            guest("alpha", uuid: a, group: "web", scanned: 5, shared: 1, reclaimed: 1),
            guest("beta", uuid: b, group: nil, scanned: 6, shared: 1, reclaimed: 1),
        ]
        let first = String(decoding: exporter.render(snapshot), as: UTF8.self)
        #expect(first.contains(#"samepage_guest_reclaim_pause_seconds_count{uuid="\#(b)"} 1"#))
        snapshot.guests = [guest("alpha", uuid: a, group: "db", scanned: 8, shared: 1, reclaimed: 1)]
        snapshot.guests[0].mode = .zero
        let text = String(decoding: exporter.render(snapshot), as: UTF8.self)
        let metrics = Exposition(Array(text.utf8))
        #expect(!text.contains(b))
        #expect(!text.contains(#"trust_group="web""#))
        #expect(metrics[#"samepage_guest_scanned_bytes_total{uuid="\#(a)"}"#] == 32_768)
        #expect(metrics[#"samepage_guest_info{uuid="\#(a)",name="alpha",mode="zero",trust_group="db",source="libvirt",vmid=""}"#] == 1)
        #expect(metrics["samepage_guests"] == 1)
        // Only the info series names the trust group or the mode.
        for line in text.split(separator: "\n") where line.contains("trust_group=") || line.contains("mode=") {
            #expect(line.hasPrefix("samepage_guest_info{"), "\(line)")
        }
    }

    @Test("A Proxmox guest's info carries its source and VMID")
    func proxmoxInfo() {
        var proxmox = guest("web1", uuid: a, group: nil, scanned: 1, shared: 0, reclaimed: 1)
        proxmox.source = .proxmox
        proxmox.vmid = 104
        var snapshot = AgentSnapshot()
        snapshot.guests = [proxmox]
        let metrics = Exposition(MetricsExporter(version: "1").render(snapshot))
        #expect(metrics[#"samepage_guest_info{uuid="\#(a)",name="web1",mode="merge",trust_group="",source="proxmox",vmid="104"}"#] == 1)
    }

    @Test("With per-guest series off, nothing names or measures a single guest")
    func perGuestOff() {
        let exporter = MetricsExporter(version: "1", perGuest: false)
        exporter.record(ReclaimPause(guest: GuestIdentity(name: "alpha", uuid: a), trustGroup: "web", milliseconds: 3))
        var snapshot = AgentSnapshot()
        snapshot.guests = [guest("alpha", uuid: a, group: "web", scanned: 5, shared: 1, reclaimed: 1)]
        let text = String(decoding: exporter.render(snapshot), as: UTF8.self)
        let metrics = Exposition(Array(text.utf8))
        #expect(!text.contains("samepage_guest_"))
        #expect(!text.contains(a))
        #expect(!text.contains("alpha"))
        // The host's figures stay.
        #expect(metrics["samepage_guests"] == 1)
        #expect(metrics["samepage_reclaim_pause_seconds_count"] == 1)
    }
}

import Foundation
import SamepageCore
import SamepageModel
import SamepageMetrics
import Testing

/// The metrics' exposition, pinned: a fixed snapshot renders to the lines recorded in
/// `Golden/metrics.txt` (compared as a sorted set of lines, since the registry's order of
/// families is not part of the format): names, types, HELP texts, labels and values.
/// `SAMEPAGE_WRITE_GOLDEN=1` records it anew.
@Suite("Metrics exposition, line for line")
struct MetricsGoldenTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden")

    @Test("A fixed snapshot renders to the recorded lines")
    func exposition() throws {
        var snapshot = AgentSnapshot()
        snapshot.connected = true
        snapshot.run = .merge
        snapshot.trackingBytes = 1 << 20
        snapshot.scanRate = 1234.5
        snapshot.tunables = Tunables(pagesToScan: 2750, advisorMode: .scanTime)
        snapshot.lastFullScan = FullScanTime(seconds: 187.25, cpuPercent: 42.5)
        var a = guest("alpha", uuid: "00000000-0000-0000-0000-00000000000a", group: "web", scanned: 1000, shared: 10, reclaimed: 64)
        a.reclaim.pauses = 2
        a.reclaim.pauseOverruns = 1
        a.reclaim.pendingPages = 5
        a.reclaim.zeroPagesRefaulted = 3
        a.reclaim.deferred = ReclaimDeferral(.cpuPressure, detail: "host CPU pressure 40.0% (limit 10.0%)")
        a.reclaim.deferralsForCPUPressure = 4
        a.reclaim.deferralsForPauseCost = 1
        a.reclaim.guestSeenOverruns = 1
        a.kernelKSM = GuestKernelKSM(mergeable: true, mergingPages: 300, zeroPages: 40, processProfit: 1_200_000)
        var b = guest("beta", uuid: "00000000-0000-0000-0000-00000000000b", group: nil, scanned: 500, shared: 0, reclaimed: 0)
        b.source = .proxmox
        b.vmid = 104
        b.mode = .report
        snapshot.guests = [a, b]
        snapshot.counters.pagesScanned = 1500
        snapshot.counters.pagesShared = 10
        snapshot.counters.fullScans = 3
        snapshot.reclaim = a.reclaim
        snapshot.kernelKSM.governed = true
        snapshot.kernelKSM.run = 1
        snapshot.kernelKSM.pagesSharing = 250
        snapshot.kernelKSM.pagesShared = 50
        snapshot.kernelKSM.ksmZeroPages = 40
        snapshot.kernelKSM.generalProfit = 1_300_000
        snapshot.kernelKSM.holdBackFailing = true
        snapshot.kernelKSM.holdBackFailures = 3
        let exporter = MetricsExporter(version: "0.1.0")
        exporter.record(ReclaimPause(guest: GuestIdentity(name: "alpha", uuid: a.uuid), trustGroup: "web", milliseconds: 4))
        exporter.record(ReclaimPause(guest: GuestIdentity(name: "alpha", uuid: a.uuid), trustGroup: "web", milliseconds: 30, guestSeenMilliseconds: 12))
        let process = ProcessMetrics(
            cpuSeconds: 12.5, residentBytes: 50 << 20, virtualBytes: 1 << 31, openFDs: 17, maxFDs: 1024, startTimeSeconds: 1_700_000_000.5)
        let text = String(decoding: exporter.render(snapshot, process: process), as: UTF8.self)
        let lines = text.split(separator: "\n").map(String.init).sorted()
        let file = Self.directory.appendingPathComponent("metrics.txt")
        if ProcessInfo.processInfo.environment["SAMEPAGE_WRITE_GOLDEN"] == "1" {
            try lines.joined(separator: "\n").appending("\n").write(to: file, atomically: true, encoding: .utf8)
        }
        let recorded = try String(contentsOf: file, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(lines.count == recorded.count)
        #expect(Set(lines).subtracting(recorded).sorted() == [])
        #expect(Set(recorded).subtracting(lines).sorted() == [])
    }
}

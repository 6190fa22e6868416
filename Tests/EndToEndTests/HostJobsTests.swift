import Glibc
import Foundation
import Libvirt
import SamepageAgent
import Testing

@Suite("End to end: the host's own jobs come first", .serialized)
struct HostJobsEndToEndTests {
    @Test("Live external memory snapshots, taken again and again while samepaged reclaims the guest, never leave it paused")
    func liveSnapshotsDuringReclaim() throws {
        let name = "sp-e2e-snap"
        TestHost.removeGuests([name])
        defer { TestHost.removeGuests([name]) }
        // 64 MiB of zero-filled files: enough pending pages for pauses throughout the run.
        try TestHost.startGuest(name, ram: "memfd", memory: 256, fill: 64)
        // Small batches (a tight budget), so that pauses of ours go on through the snapshots.
        let daemon = try DaemonProcess(config: daemonConfig)
        try daemon.writePolicy(name, "mode = \"zero\"\nmax_pause_ms = 10\nmax_pause_ms_per_minute = 6000\n")
        try daemon.start()
        defer { _ = daemon.stop() }
        func reclaim() throws -> [String: Any] { (try daemon.guest(name)?["reclaim"] as? [String: Any]) ?? [:] }
        // The snapshots start with the daemon: its first pauses come within seconds.
        let libvirt = try LibvirtConnection()
        let uuid = try #require(try libvirt.activeDomains().first { $0.name == name }?.uuid)
        let directory = "\(daemon.directory)/snapshots"
        mkdir(directory, 0o755)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var taken = 0
        var leftPaused: [String] = []
        let start = ContinuousClock.now
        while taken < 40 && ContinuousClock.now - start < .seconds(120) {
            let file = "\(directory)/s\(taken).mem"
            // The host's job, as an operator or a backup tool runs it.
            let snapshot = try TestHost.run(
                "/usr/bin/virsh",
                ["-c", "qemu:///system", "snapshot-create-as", name, "s\(taken)", "--memspec", "file=\(file),snapshot=external",
                 "--no-metadata", "--live"])
            #expect(snapshot.status == 0, "snapshot \(taken): \(snapshot.output)")
            unlink(file)
            taken += 1
            // A pause of ours lasts milliseconds; a guest still paused a few seconds after the
            // job ended was left paused.
            if !eventually(timeout: .seconds(5), { (try? libvirt.domainInfo(uuid: uuid).state) == .running }) {
                leftPaused.append("after snapshot \(taken): \(String(describing: try? libvirt.domainInfo(uuid: uuid)))")
            }
        }
        #expect(taken >= 20, "only \(taken) snapshots in 120 s")
        #expect(leftPaused.isEmpty, "\(leftPaused)\n\(daemon.log.suffix(3000))")
        // Pauses of ours happened between and around the jobs, or the test showed nothing.
        let after = try reclaim()
        #expect(int(after["pauses"]) >= 1, "no pause of samepaged's while the snapshots ran: \(after)")
        #expect(try libvirt.domainInfo(uuid: uuid).state == .running)
        #expect(!daemon.log.contains("critical"), "\(daemon.log.suffix(3000))")
        #expect(daemon.stop() == 0)
        #expect(try PauseJournal(path: "\(daemon.directory)/paused.json").entries().isEmpty)
        #expect(try libvirt.domainInfo(uuid: uuid).state == .running)
    }
}

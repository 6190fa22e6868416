import Glibc
import Foundation
import QMP
import SamepageAgent
import Testing

/// QEMU guests outside libvirt, started by scripts/testhost/qemu-guest.sh.
private enum QEMUGuest {
    static func start(_ name: String, _ arguments: [String]) throws {
        try TestHost.script("qemu-guest.sh", ["start", name] + arguments)
        try TestHost.script("qemu-guest.sh", ["wait-ready", name, "120"])
    }

    static func stop(_ names: [String]) {
        for name in names { _ = try? TestHost.script("qemu-guest.sh", ["stop", name]) }
    }

    static func value(_ command: String, _ name: String) throws -> String {
        try TestHost.script("qemu-guest.sh", [command, name]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// QEMU's run status, asked over the guest's QMP socket (nil while another client holds it).
    static func status(_ name: String) -> QMPRunStatus? {
        guard let socket = try? value("qmp", name), var qmp = try? QMPConnection.connect(path: socket, timeout: .seconds(2)) else { return nil }
        return try? qmp.queryStatus().status
    }
}

private func checks(_ name: String) -> [Substring] {
    TestHost.serial(name).split(whereSeparator: \.isNewline).filter { $0.hasPrefix("SAMEPAGE-DATASET-CHECK") }
}

private func datasetHash() throws -> String {
    try String(contentsOfFile: "\(TestHost.stateDirectory)/dataset.md5", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
}

/// A daemon that also follows QEMU guests outside libvirt, with the test host's Proxmox-style
/// directories.
private var qmpDaemonConfig: String {
    daemonConfig + """

        [qemu]
        proxmox_run_directory = "\(TestHost.stateDirectory)/proxmox/run"
        proxmox_config_directory = "\(TestHost.stateDirectory)/proxmox/etc"

        """
}

/// A client that holds a guest's QMP socket, as Kata's shim holds its QEMU's: QEMU then
/// greets no one else.
private final class MonitorHolder {
    var connection: QMPConnection?
    init(socket: String) throws { connection = try QMPConnection.connect(path: socket, timeout: .seconds(5)) }
}

@Suite("End to end: QEMU guests outside libvirt, over QMP", .serialized)
struct QMPGuestsEndToEndTests {
    @Test("A Proxmox-style VM, a plain QEMU and one with virtiofsd get their zero pages reclaimed over QMP with their data sets intact; a lock: line and a held QMP socket keep pauses off; sharing spans a libvirt guest")
    func guestsOutsideLibvirt() throws {
        let proxmox = "sp-e2e-qp", plain = "sp-e2e-qq", virtiofs = "sp-e2e-qv", held = "sp-e2e-qh", libvirtGuest = "sp-e2e-ql"
        let outside = [proxmox, plain, virtiofs, held]
        QEMUGuest.stop(outside)
        TestHost.removeGuests([libvirtGuest])
        defer {
            QEMUGuest.stop(outside)
            TestHost.removeGuests([libvirtGuest])
        }
        let share = "/tmp/samepage-e2e-qv-share"
        try? FileManager.default.createDirectory(atPath: share, withIntermediateDirectories: true)
        try QEMUGuest.start(proxmox, ["--layout", "proxmox", "--vmid", "9101", "--lock", "backup", "--workload", "dataset"])
        try QEMUGuest.start(plain, ["--layout", "plain", "--workload", "dataset", "--fill", "16"])
        try QEMUGuest.start(virtiofs, ["--layout", "plain", "--memory", "256", "--workload", "dataset", "--virtiofs", share])
        try TestHost.script("qemu-guest.sh", ["wait-for", virtiofs, "SAMEPAGE-VIRTIOFS-OK", "120"])
        try QEMUGuest.start(held, ["--layout", "plain"])
        try TestHost.startGuest(libvirtGuest, ram: "memfd", fill: 16)
        let holder = try MonitorHolder(socket: try QEMUGuest.value("qmp", held))
        let expected = try datasetHash()
        let checksBefore = [proxmox: checks(proxmox).count, plain: checks(plain).count, virtiofs: checks(virtiofs).count]

        let daemon = try DaemonProcess(config: qmpDaemonConfig)
        for name in [proxmox, virtiofs, held] { try daemon.writePolicy(name, "mode = \"zero\"\ntrust_group = \"q\"\n") }
        // The plain QEMU and the libvirt guest hold the same fill: one trust group merges it.
        for name in [plain, libvirtGuest] { try daemon.writePolicy(name, "mode = \"merge\"\ntrust_group = \"q\"\n") }
        try daemon.start()
        func guest(_ name: String) throws -> [String: Any] { try #require(try daemon.guest(name), "\(daemon.log.suffix(3000))") }
        func reclaim(_ name: String) throws -> [String: Any] { (try guest(name)["reclaim"] as? [String: Any]) ?? [:] }

        #expect(eventually(timeout: .seconds(30)) { outside.allSatisfy { (try? daemon.guest($0)?["mapped"] as? Bool) == true } },
                "\(daemon.log.suffix(3000))")
        #expect(try guest(proxmox)["source"] as? String == "proxmox")
        #expect(int(try guest(proxmox)["vmid"]) == 9101)
        #expect(try guest(proxmox)["uuid"] as? String == (try QEMUGuest.value("uuid", proxmox)))
        for name in [plain, virtiofs, held] { #expect(try guest(name)["source"] as? String == "qemu") }
        #expect(try guest(libvirtGuest)["source"] as? String == "libvirt")
        let listing = try daemon.cli("list")
        #expect(listing.output.contains("proxmox 9101"), "\(listing.output)")

        // Zero pages reclaimed over QMP, on the guests that may be paused.
        for name in [plain, virtiofs] {
            #expect(eventually(timeout: .seconds(60)) { int((try? reclaim(name))?["zero_pages_reclaimed"]) > 0 },
                    "\(name): \(daemon.log.suffix(3000))")
        }
        #expect(daemon.log.contains("audit: paused \(plain)"))
        // virtiofsd maps the guest's RAM as its vhost-user backend: recognised, not another mapper.
        let facts = try #require(try guest(virtiofs)["facts"] as? [String: Any])
        #expect((facts["vhost_user_backends"] as? [Any])?.isEmpty == false, "\(facts)")
        #expect((facts["other_mappers"] as? [Any])?.isEmpty == true, "\(facts)")

        // Proxmox's lock: no pause while it is there, and reclaim once it is gone.
        #expect(try reclaim(proxmox)["reason"] as? String == "Proxmox VE lock: backup (an operation of Proxmox's is under way)")
        #expect(int(try reclaim(proxmox)["zero_pages_reclaimed"]) == 0)
        #expect(!daemon.log.contains("audit: paused \(proxmox)"))
        try TestHost.script("qemu-guest.sh", ["lock", proxmox])
        #expect(eventually(timeout: .seconds(60)) { int((try? reclaim(proxmox))?["zero_pages_reclaimed"]) > 0 },
                "\(daemon.log.suffix(3000))")

        // The held socket: accounted, reclaim waits and says why, never paused.
        #expect(int(try guest(held)["zero_pages"]) > 0)
        let waiting = try reclaim(held)
        #expect((waiting["deferred"] as? [String: Any])?["reason"] as? String == "monitor_busy", "\(waiting)")
        #expect(int(waiting["deferrals_monitor_busy"]) > 0)
        #expect(int(waiting["zero_pages_reclaimed"]) == 0)

        // One trust group across sources: the plain QEMU's fill and the libvirt guest's merge.
        let sharing = try #require(try daemon.json("sharing") as? [String: Any])
        let names = try #require(sharing["guests"] as? [String])
        let pages = try #require(sharing["pages"] as? [[Int]])
        let (i, j) = (try #require(names.firstIndex(of: plain)), try #require(names.firstIndex(of: libvirtGuest)))
        #expect(pages[i][j] > 1000, "\(sharing)")

        #expect(daemon.stop() == 0)
        withExtendedLifetime(holder) {}  // the socket stays held until samepaged is gone
        #expect((try? PauseJournal(path: "\(daemon.directory)/paused.json").entries().isEmpty) == true)
        for name in [proxmox, plain, virtiofs] { #expect(QEMUGuest.status(name) == .running, "\(name)") }
        // The data sets held through every pause (a check runs every few seconds).
        for name in [proxmox, plain, virtiofs] {
            #expect(eventually(timeout: .seconds(30)) { checks(name).count > checksBefore[name]! + 1 })
            #expect(checks(name).allSatisfy { $0.contains(expected) }, "\(name): \(TestHost.serial(name).suffix(1000))")
        }
    }

    @Test("kill -9 of samepaged inside a QMP pause: the next samepaged resumes the guest from the journal")
    func crashInsideAQMPPause() throws {
        let name = "sp-e2e-qk"
        QEMUGuest.stop([name])
        defer { QEMUGuest.stop([name]) }
        try QEMUGuest.start(name, ["--layout", "plain", "--memory", "256", "--workload", "dataset"])
        let expected = try datasetHash()
        let daemon = try DaemonProcess(config: qmpDaemonConfig)
        // Long pauses, so that a kill lands inside one.
        try daemon.writePolicy(name, "mode = \"zero\"\nmax_pause_ms = 400\nmax_pause_ms_per_minute = 30000\n")
        let journal = "\(daemon.directory)/paused.json"
        var landed = false
        for _ in 0..<10 where !landed {
            try daemon.start()
            // After the first pause (a 64-page probe), batches fill the 400 ms budget.
            _ = eventually(timeout: .seconds(60)) {
                int(((try? daemon.guest(name))?["reclaim"] as? [String: Any])?["pauses"]) >= 1
            }
            let deadline = ContinuousClock.now + .seconds(60)
            var inPause = false
            while ContinuousClock.now < deadline && !inPause {
                if let text = try? String(contentsOfFile: journal, encoding: .utf8), text.contains(name) { inPause = true } else { usleep(200) }
            }
            usleep(UInt32.random(in: 1_000...5_000))
            daemon.kill9()
            landed = QEMUGuest.status(name) == .paused
            if !inPause { break }
            if !landed { continue }
            // The journal holds our pause: the next samepaged ends it before anything else.
            #expect((try? PauseJournal(path: journal).entries().map(\.name)) == [name])
            try daemon.start()
            #expect(eventually(timeout: .seconds(15)) { QEMUGuest.status(name) == .running }, "\(daemon.log.suffix(3000))")
            #expect(eventually(timeout: .seconds(15)) { (try? PauseJournal(path: journal).entries().isEmpty) == true })
            #expect(daemon.log.contains("\(name): resumed (paused by samepaged)"), "\(daemon.log.suffix(3000))")
            #expect(daemon.stop() == 0)
        }
        #expect(landed, "no kill -9 landed inside a QMP pause:\n\(daemon.log.suffix(3000))")
        #expect(QEMUGuest.status(name) == .running)
        let before = checks(name).count
        #expect(eventually(timeout: .seconds(30)) { checks(name).count > before })
        #expect(checks(name).allSatisfy { $0.contains(expected) }, "\(TestHost.serial(name).suffix(1000))")
    }

    @Test("Over QMP as over libvirt: a pause by someone else is never ended by samepaged; an outside cont during our pause stops the punching")
    func someoneElsesPause() throws {
        let name = "sp-e2e-qo"
        QEMUGuest.stop([name])
        defer { QEMUGuest.stop([name]) }
        try QEMUGuest.start(name, ["--layout", "plain", "--memory", "256", "--workload", "dataset", "--second-qmp"])
        let expected = try datasetHash()
        // The operator's monitor: QEMU's second QMP socket.
        let socket = try QEMUGuest.value("qmp2", name)
        func operatorCommand(_ command: String) throws {
            var qmp = try QMPConnection.connect(path: socket, timeout: .seconds(5))
            _ = try qmp.execute(command)
        }
        try operatorCommand("stop")
        let daemon = try DaemonProcess(config: qmpDaemonConfig)
        try daemon.writePolicy(name, "mode = \"zero\"\nmax_pause_ms = 400\nmax_pause_ms_per_minute = 30000\n")
        try daemon.start()
        func reclaim() -> [String: Any] { ((try? daemon.guest(name))?["reclaim"] as? [String: Any]) ?? [:] }
        #expect(eventually(timeout: .seconds(20)) { int(((try? daemon.guest(name))?["zero_pages"])) > 1000 }, "\(daemon.log.suffix(2000))")
        usleep(5_000_000)
        #expect(QEMUGuest.status(name) == .paused)
        #expect(int(reclaim()["pauses"]) == 0)
        #expect((reclaim()["reason"] as? String)?.contains("not running (paused)") == true, "\(reclaim())")
        // Resumed by its operator: samepaged sees it running again and reclaims.
        try operatorCommand("cont")
        #expect(eventually(timeout: .seconds(30)) { int(reclaim()["zero_pages_reclaimed"]) > 0 }, "\(daemon.log.suffix(3000))")

        // The operator sends cont again and again: one lands inside a pause of ours, which then
        // stops punching and is not ended by samepaged a second time.
        var caught = false
        for _ in 0..<8 where !caught {
            let end = ContinuousClock.now + .seconds(4)
            var qmp = try QMPConnection.connect(path: socket, timeout: .seconds(5))
            while ContinuousClock.now < end {
                _ = try? qmp.execute("cont")
                usleep(300)
            }
            // Inside the punching, or between our stop and our look at the state after it:
            // either way samepaged leaves the guest as the operator's cont made it.
            caught = daemon.log.contains("during our pause; punching stopped, not resuming it")
                || daemon.log.contains("its state changed during our pause (running); punching stopped, not resuming it")
                || daemon.log.contains("the pause is not ours (someone else resumed it right after our suspend)")
        }
        #expect(caught, "no outside cont landed inside a pause:\n\(daemon.log.suffix(3000))")
        #expect(int(reclaim()["pauses_stopped_early"]) > 0)

        // Paused again by the operator while samepaged runs: it stays paused.
        try operatorCommand("stop")
        let pauses = int(reclaim()["pauses"])
        usleep(6_000_000)
        #expect(QEMUGuest.status(name) == .paused)
        #expect(int(reclaim()["pauses"]) == pauses)
        try operatorCommand("cont")
        #expect(daemon.stop() == 0)
        #expect(QEMUGuest.status(name) == .running)
        let before = checks(name).count
        #expect(eventually(timeout: .seconds(30)) { checks(name).count > before })
        #expect(checks(name).allSatisfy { $0.contains(expected) }, "\(TestHost.serial(name).suffix(1000))")
    }

    @Test("An NVDIMM guest outside libvirt is mapped and accounted, never eligible for reclaim, and nothing of it is punched")
    func persistentMemoryGuestNotEligible() throws {
        let name = "sp-e2e-nvdimm"
        QEMUGuest.stop([name])
        defer { QEMUGuest.stop([name]) }
        // Its RAM is a memfd and its NVDIMM a file on tmpfs: only the device says it is not RAM.
        try QEMUGuest.start(name, ["--layout", "plain", "--memory", "192", "--nvdimm", "64", "--fill", "16"])
        let daemon = try DaemonProcess(config: qmpDaemonConfig)
        try daemon.writePolicy(name, "mode = \"zero\"\nmax_pause_ms = 30\nmax_pause_ms_per_minute = 3000\n")
        try daemon.start()
        defer { _ = daemon.stop() }
        func guest() -> [String: Any] { (try? daemon.guest(name)) ?? [:] }
        #expect(eventually(timeout: .seconds(60)) { guest()["mapped"] as? Bool == true }, "\(daemon.log.suffix(2000))")
        let reclaim = (guest()["reclaim"] as? [String: Any]) ?? [:]
        #expect(reclaim["eligible"] as? Bool == false)
        #expect((reclaim["reason"] as? String ?? "").contains("persistent memory devices: "), "\(reclaim)")
        // Its 16 MiB of zero-filled files are found (the scan goes on) and never punched.
        #expect(eventually(timeout: .seconds(60)) { int(guest()["zero_pages"]) >= 4096 }, "\(guest())")
        usleep(10_000_000)
        let after = (guest()["reclaim"] as? [String: Any]) ?? [:]
        #expect(int(after["pauses"]) == 0)
        #expect(int(guest()["zero_pages_reclaimed"]) == 0)
        #expect(QEMUGuest.status(name) == .running || QEMUGuest.status(name) == nil)
        #expect(daemon.stop() == 0)
    }
}

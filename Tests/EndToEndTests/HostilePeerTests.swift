import Foundation
import Glibc
import Testing

/// A process that looks like a QEMU to samepaged: scripts/testhost/fake-qemu.py run by a copy of
/// Debian's Python named like QEMU, with a 64 MiB shared memfd and a QMP socket.
private final class FakeQEMU {
    let pid: pid_t
    let log: String
    let socket: String

    /// - Parameters:
    ///   - binary: where the copy of Python goes (its directories are made 0755).
    ///   - user: who runs it (nil: root), and owns the copy and its directory.
    ///   - socket: its QMP socket (default: `qmp.sock` beside the binary).
    init(binary: String, name: String, uuid: String, mode: String, user: String?, socket: String? = nil) throws {
        let directory = (binary as NSString).deletingLastPathComponent
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        try FileManager.default.copyItem(atPath: "/usr/bin/python3.11", toPath: binary)
        chmod(binary, 0o755)
        self.socket = socket ?? "\(directory)/qmp.sock"
        unlink(self.socket)
        log = "\(directory)/connections.log"
        FileManager.default.createFile(atPath: log, contents: nil)
        if let user {
            for path in [directory, binary, log] { _ = try TestHost.run("/bin/chown", [user, path]) }
        }
        let script = TestHost.scripts.appendingPathComponent("fake-qemu.py").path
        let setpriv = user.map { "setpriv --reuid=\($0) --regid=nogroup --clear-groups " } ?? ""
        let command = "FAKE_QEMU_MODE=\(mode) FAKE_QEMU_LOG=\(log) exec \(setpriv)\(binary) - -name \(name) -uuid \(uuid) "
            + "-qmp unix:\(self.socket),server=on,wait=off -object memory-backend-memfd,id=pc.ram,size=64M,share=on "
            + "-machine memory-backend=pc.ram < \(script)"
        pid = try TestHost.spawn("/bin/sh", ["-c", command], output: "\(directory)/output.log")
        guard eventually(timeout: .seconds(20), { access(self.socket, F_OK) == 0 }) else {
            throw TestHost.ScriptFailed(description: "the fake QEMU did not start: \((try? String(contentsOfFile: "\(directory)/output.log", encoding: .utf8)) ?? "")")
        }
    }

    /// Clients its QMP socket accepted.
    var connections: Int {
        ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    func stop() {
        kill(pid, SIGKILL)
        _ = TestHost.wait(pid)
    }
}

@Suite("End to end: hostile peers", .serialized)
struct HostilePeerEndToEndTests {
    @Test("A QEMU whose monitor floods costs only itself, and a process of nobody's posing as a guest is never contacted, listed or read")
    func hostilePeers() throws {
        let guests = ["sp-e2e-h1", "sp-e2e-h2"], flooder = "sp-e2e-flood"
        TestHost.removeGuests(guests)
        defer { TestHost.removeGuests(guests) }
        for name in guests { try TestHost.startGuest(name, ram: "memfd", fill: 16) }
        // Root's, from root's own directories: trusted, and its monitor floods after the handshake.
        let flood = try FakeQEMU(
            binary: "\(TestHost.stateDirectory)/fake-qemu/bin/qemu-system-x86_64", name: flooder,
            uuid: "5a3f0c1e-8b7d-4e2a-9c6f-0d1e2f3a4b5c", mode: "flood", user: nil)
        defer { flood.stop() }
        // nobody's, named kvm in /dev/shm, posing as a real guest whose policy is zero.
        let impostor = try FakeQEMU(
            binary: "/dev/shm/samepage-e2e-impostor/kvm", name: guests[0],
            uuid: "0b9e7a61-2f4c-4d8e-a1b3-c5d7e9f1a2b4", mode: "quiet", user: "nobody")
        defer { impostor.stop() }
        // root's, from root's own directories, but its QMP socket in /dev/shm, where anyone may
        // put a socket: found and accounted, its socket never used.
        let openSocket = try FakeQEMU(
            binary: "\(TestHost.stateDirectory)/fake-qemu-open/bin/qemu-system-x86_64", name: "sp-e2e-opensock",
            uuid: "7c2d9e4f-1a3b-4c5d-8e6f-9a0b1c2d3e4f", mode: "quiet", user: nil, socket: "/dev/shm/samepage-e2e-open.qmp")
        defer { openSocket.stop(); unlink(openSocket.socket) }

        let daemon = try DaemonProcess(config: daemonConfig)  // [qemu] is on by default
        for name in guests + [flooder, "sp-e2e-opensock"] {
            try daemon.writePolicy(name, "mode = \"zero\"\nmax_pause_ms = 30\nmax_pause_ms_per_minute = 3000\n")
        }
        try daemon.start()
        #expect(eventually(timeout: .seconds(30)) { (try? daemon.guest(flooder)?["mapped"] as? Bool) == true },
                "\(daemon.log.suffix(3000))")
        #expect(try eventually(timeout: .seconds(30)) { try guests.allSatisfy { try daemon.guest($0)?["mapped"] as? Bool == true } })
        usleep(5_000_000)
        let rssBefore = residentBytes(daemon.pid)
        let scannedBefore = try guests.map { int(try daemon.guest($0)?["pages_scanned"]) }

        // A minute in which the flooding guest's pauses keep failing: the others go on.
        var slowest: Duration = .zero
        let end = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < end {
            let asked = ContinuousClock.now
            #expect(try daemon.cli("list").status == 0)
            slowest = max(slowest, ContinuousClock.now - asked)
            usleep(2_000_000)
        }
        #expect(slowest < .seconds(2), "samepage list took \(slowest)")
        for (name, before) in zip(guests, scannedBefore) {
            let guest = try #require(try daemon.guest(name))
            #expect(int(guest["pages_scanned"]) > before, "\(name) was not scanned on")
            #expect(int((guest["reclaim"] as? [String: Any])?["zero_pages_reclaimed"]) > 0, "\(name) reclaimed nothing:\n\(daemon.log.suffix(3000))")
        }
        // Tried again only after a backoff that grows: a handful of connections, not one per loop.
        #expect(flood.connections >= 1 && flood.connections <= 8, "\(flood.connections) connections to the flooding monitor")
        let faults = daemon.log.components(separatedBy: "guest \(flooder): cannot pause it:").count - 1
        #expect(faults <= 1, "\(faults) warnings about the flooding guest")
        #expect(int((try daemon.guest(flooder)?["reclaim"] as? [String: Any])?["zero_pages_reclaimed"]) <= 0)
        let rssAfter = residentBytes(daemon.pid)
        #expect(rssAfter - rssBefore < 64 << 20, "samepaged grew from \(rssBefore) to \(rssAfter) bytes")

        // nobody's impostor: never contacted, never listed, never mapped; said once in the log.
        #expect(impostor.connections == 0)
        let named = try daemon.guests().filter { $0["name"] as? String == guests[0] }
        #expect(named.count == 1 && named.first?["source"] as? String == "libvirt", "\(named)")
        #expect(daemon.log.contains("process \(impostor.pid) looks like a QEMU but is ignored: it runs as uid"), "\(daemon.log.suffix(3000))")
        // ...but `list` says it is ignored, and why.
        let list = try daemon.cli("list").output
        #expect(list.contains("ignored: pid \(impostor.pid) (uid 65534"), "\(list)")

        // The QMP socket in /dev/shm was never connected to, and the guest never paused.
        #expect(openSocket.connections == 0, "\(openSocket.connections) connections to a socket in /dev/shm")
        let names = try daemon.guests().map { $0["name"] as? String ?? "" }
        let open = try #require(try daemon.guest("sp-e2e-opensock"), "\(names)")
        #expect(int((open["reclaim"] as? [String: Any])?["pauses"]) == 0)
        let openInfo = try daemon.cli("dominfo", "sp-e2e-opensock").output
        #expect(openInfo.contains("/dev/shm"), "\(openInfo)")

        let stopping = ContinuousClock.now
        #expect(daemon.stop() == 0)
        let stopped = ContinuousClock.now - stopping
        #expect(stopped < .seconds(15))
        print("hostile peers: \(flood.connections) connections to the flooding monitor in 60 s, slowest list \(slowest), RSS \(rssBefore >> 20) -> \(rssAfter >> 20) MiB, stopped in \(stopped)")
    }
}

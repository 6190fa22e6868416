import Glibc
import Foundation
import Testing

@Suite("End to end: guests with a vhost-user backend (virtiofsd)", .serialized)
struct VhostUserEndToEndTests {
    @Test("virtiofsd, started by libvirt or on its own socket, may map the RAM: reclaim runs and the guest's data is intact; a stranger mapping it stops reclaim")
    func virtiofsGuestsAreReclaimed() throws {
        let names = ["sp-e2e-vu1", "sp-e2e-vu2"]
        TestHost.removeGuests(names)
        defer { TestHost.removeGuests(names) }
        let share = "/tmp/samepage-e2e-virtiofs-\(getpid())"
        mkdir(share, 0o755)
        defer { _ = try? FileManager.default.removeItem(atPath: share) }
        try "shared from the host\n".write(toFile: "\(share)/hello.txt", atomically: true, encoding: .utf8)
        let socket = "/run/samepage-e2e-\(getpid())-vu2.sock"

        // vu1: libvirt starts virtiofsd (its socket is only on QEMU's command line), with the
        // data set. vu2: virtiofsd started on a socket the XML names.
        try TestHost.startGuest(names[0], ram: "memfd", fill: 16, workload: "dataset", virtiofs: ["--virtiofs", share])
        try TestHost.startGuest(names[1], ram: "memfd", fill: 16, virtiofs: ["--virtiofs", share, "--virtiofs-socket", socket])
        let expected = try String(contentsOfFile: "\(TestHost.stateDirectory)/dataset.md5", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)

        let daemon = try DaemonProcess(config: daemonConfig)
        for name in names {
            try daemon.writePolicy(name, "mode = \"zero\"\nmax_pause_ms = 30\nmax_pause_ms_per_minute = 3000\n")
        }
        let shmemBefore = TestHost.shmemBytes()
        try daemon.start()

        func facts(_ name: String) throws -> [String: Any] { try #require(try daemon.guest(name)?["facts"] as? [String: Any]) }
        func reclaim(_ name: String) throws -> [String: Any] { try #require(try daemon.guest(name)?["reclaim"] as? [String: Any]) }
        #expect(try eventually { try names.allSatisfy { try daemon.guest($0)?["mapped"] as? Bool == true } }, "\(daemon.log)")
        for name in names {
            let backends = try facts(name)["vhost_user_backends"] as? [[String: Any]] ?? []
            #expect(!backends.isEmpty && backends.allSatisfy { $0["command"] as? String == "virtiofsd" }, "\(name): \(backends)")
            #expect((try facts(name)["other_mappers"] as? [Any])?.isEmpty == true, "\(name): \((try? facts(name)) ?? [:])")
            #expect(try reclaim(name)["eligible"] as? Bool == true, "\(name): \((try? reclaim(name)) ?? [:])")
        }
        let vu2Backends = try facts(names[1])["vhost_user_backends"] as? [[String: Any]] ?? []
        #expect(vu2Backends.first?["socket"] as? String == socket)
        let vu1Backends = try facts(names[0])["vhost_user_backends"] as? [[String: Any]] ?? []
        #expect((vu1Backends.first?["socket"] as? String)?.hasSuffix("fs0-fs.sock") == true, "\(vu1Backends)")

        // Both guests' zero-filled files are given back.
        #expect(try eventually(timeout: .seconds(150)) {
            try names.allSatisfy { int(try reclaim($0)["zero_pages_reclaimed"]) >= 4096 }
        }, "\(daemon.log.suffix(2000))")
        let reported = try names.reduce(0) { $0 + int(try daemon.guest($1)?["bytes_reclaimed"]) }
        let dropped = shmemBefore - TestHost.shmemBytes()
        #expect(dropped >= reported * 9 / 10, "Shmem dropped by \(dropped) bytes; reported reclaimed \(reported)")

        // vu1 keeps re-checking its data set: every check after the reclaim matches. The
        // backends still run.
        let checksBefore = TestHost.serial(names[0]).components(separatedBy: "SAMEPAGE-DATASET-CHECK").count
        #expect(eventually(timeout: .seconds(30)) {
            TestHost.serial(names[0]).components(separatedBy: "SAMEPAGE-DATASET-CHECK").count >= checksBefore + 2
        })
        let checks = TestHost.serial(names[0]).split(whereSeparator: \.isNewline).filter { $0.hasPrefix("SAMEPAGE-DATASET-CHECK") }
        #expect(!checks.isEmpty && checks.allSatisfy { $0.contains(expected) }, "\(checks.filter { !$0.contains(expected) })")
        for backend in vu1Backends + vu2Backends {
            #expect(kill(pid_t(int(backend["pid"])), 0) == 0, "virtiofsd \(backend) still runs")
        }
        #expect(FileManager.default.fileExists(atPath: "\(share)/samepage-virtiofs-guest.txt"), "the guest wrote through virtiofs")

        // A process that is no backend maps vu2's RAM: within a reconcile, reclaim stops.
        let qemu = try TestHost.qemuPID(names[1])
        let stranger = try TestHost.spawn("/usr/bin/python3", ["-c", """
            import mmap, os, time
            pid = \(qemu)
            for name in os.listdir(f"/proc/{pid}/map_files"):
                if os.readlink(f"/proc/{pid}/map_files/{name}").startswith("/memfd:"):
                    start, end = (int(x, 16) for x in name.split("-"))
                    if end - start >= 128 << 20:
                        fd = os.open(f"/proc/{pid}/map_files/{name}", os.O_RDONLY)
                        m = mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ)
                        print("mapped", name, flush=True)
                        break
            time.sleep(120)
            """], output: "/tmp/samepage-e2e-stranger-\(getpid()).log")
        defer { kill(stranger, SIGKILL); _ = TestHost.wait(stranger) }
        #expect(try eventually(timeout: .seconds(20)) {
            let r = try reclaim(names[1])
            return r["eligible"] as? Bool == false && (r["reason"] as? String)?.contains("python3 (\(stranger))") == true
        }, "\((try? reclaim(names[1])) ?? [:])")
        #expect(try reclaim(names[0])["eligible"] as? Bool == true, "the other guest is not affected")
        #expect(daemon.stop() == 0)
    }
}

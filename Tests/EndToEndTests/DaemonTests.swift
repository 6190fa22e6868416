import Glibc
import Foundation
import Libvirt
import SamepageAgent
import Testing

@Suite("End to end: samepaged and the samepage CLI", .serialized)
struct DaemonEndToEndTests {
    @Test("The daemon follows real guests; list, stats, run, tune and policy reload work live")
    func daemonWithGuests() throws {
        let names = ["sp-e2e-e1", "sp-e2e-e2"]
        TestHost.removeGuests(names)
        defer { TestHost.removeGuests(names) }
        try TestHost.startGuest("sp-e2e-e1", ram: "memfd", fill: 8)
        try TestHost.startGuest("sp-e2e-e2", ram: "memfd", fill: 8)

        let daemon = try DaemonProcess(config: daemonConfig)
        // Only the test's guests are read; any other guest on the host stays off.
        for name in names { try daemon.writePolicy(name, reportPolicy) }
        try daemon.start()
        #expect(try eventually { try names.allSatisfy { try daemon.guest($0)?["mapped"] as? Bool == true } }, "\(daemon.log)")
        #expect(try eventually(timeout: .seconds(60)) { try names.allSatisfy { int(try daemon.guest($0)?["full_scans"]) >= 2 } })

        // Stopped, the listing and the global counters agree exactly.
        #expect(try daemon.cli("run", "stop").status == 0)
        usleep(600_000)
        let guests = try daemon.guests().filter { names.contains($0["name"] as! String) }
        let stats = try daemon.stats()
        #expect(stats["run_mode"] as? String == "stop")
        func sum(_ key: String) -> Int { guests.reduce(0) { $0 + int($1[key]) } }
        #expect(sum("pages_scanned") == int(stats["pages_scanned"]))
        #expect(sum("zero_pages") == int(stats["zero_pages"]))
        #expect(sum("pages_unshared") == int(stats["pages_unshared"]))
        #expect(sum("pages_shared") + sum("pages_sharing") == int(stats["pages_shared"]) + int(stats["pages_sharing"]))
        #expect(int(stats["pages_sharing"]) > 2048, "the two guests' fill pages are shared")
        for key in ["pages_shared", "pages_sharing", "pages_unshared", "pages_volatile", "full_scans", "pages_scanned", "pages_skipped", "zero_pages"] {
            #expect(stats[key] != nil, "stats --json has \(key)")
            #expect(guests[0][key] != nil, "list --json has \(key)")
        }
        for key in ["name", "uuid", "state", "mapped", "reason", "mode", "trust_group"] {
            #expect(guests[0].keys.contains(key), "list --json has \(key)")
        }

        // run stop: pages_scanned stays still; run merge: it moves again.
        let still = int(try daemon.stats()["pages_scanned"])
        usleep(1_500_000)
        #expect(int(try daemon.stats()["pages_scanned"]) == still)
        #expect(try daemon.cli("run", "merge").status == 0)
        #expect(try eventually { int(try daemon.stats()["pages_scanned"]) > still })

        // tune, live: the new value shows, and scanning slows down accordingly.
        func rate() throws -> Int {
            let a = int(try daemon.stats()["pages_scanned"])
            usleep(2_000_000)
            return int(try daemon.stats()["pages_scanned"]) - a
        }
        let fast = try rate()
        #expect(try daemon.cli("tune", "--pages-to-scan", "20").status == 0)
        #expect(try eventually { int(try daemon.stats()["pages_to_scan"]) == 20 })
        usleep(500_000)
        let slow = try rate()
        #expect(slow < fast / 4, "pages scanned in 2 s: \(fast) before, \(slow) after tune")
        let refused = try daemon.cli("tune", "--max-page-sharing", "1")
        #expect(refused.status != 0 && refused.output.contains("max_page_sharing"))

        // policy reload applies a changed policy.
        try daemon.writePolicy("sp-e2e-e2", "mode = \"off\"\n")
        #expect(try daemon.cli("policy", "reload").status == 0)
        #expect(try eventually {
            let e2 = try daemon.guest("sp-e2e-e2")
            return e2?["mapped"] as? Bool == false && (e2?["reason"] as? String)?.contains("off") == true
        })
        #expect(try daemon.guest("sp-e2e-e1")?["mapped"] as? Bool == true)
        let shown = try daemon.cli("policy", "show", "sp-e2e-e2")
        #expect(shown.output.contains("off") && shown.output.contains("sp-e2e-e2.toml"))

        // A bad policy file is rejected with file:line; its guest keeps its policy; the daemon serves on.
        try daemon.writePolicy("sp-e2e-e1", "mode = \"merge\"\nmax_pages = -3\n")
        let bad = try daemon.cli("policy", "reload")
        #expect(bad.status != 0 && bad.output.contains("sp-e2e-e1.toml:2"), "\(bad.output)")
        let randomBytes = (0..<4096).map { _ in UInt8.random(in: 0...255) }
        try Data(randomBytes).write(to: URL(fileURLWithPath: "\(daemon.policies)/sp-e2e-e1.toml"))
        let garbage = try daemon.cli("policy", "reload")
        #expect(garbage.status != 0 && garbage.output.contains("sp-e2e-e1.toml"), "\(garbage.output)")
        #expect(try daemon.guest("sp-e2e-e1")?["mode"] as? String == "report")
        #expect(try daemon.guest("sp-e2e-e1")?["mapped"] as? Bool == true)

        // SIGHUP with a broken configuration file keeps the running configuration.
        try "[scan]\nadvisor_mode = \"none\"\npages_to_scan = \"many\"\n".write(toFile: daemon.configFile, atomically: true, encoding: .utf8)
        kill(daemon.pid, SIGHUP)
        #expect(eventually { daemon.log.contains("configuration rejected") })
        #expect(int(try daemon.stats()["pages_to_scan"]) == 20)

        // SIGTERM: a clean exit, the socket gone, the guests running on.
        #expect(daemon.stop() == 0)
        #expect(access(daemon.socket, F_OK) != 0)
        for name in names { #expect(try TestHost.guest("list").contains("\(name)") && (try? TestHost.qemuPID(name)) != nil) }
        #expect(daemon.log.contains("released: agent stopped"))
    }

    @Test("Bad configuration, a second daemon, a non-root user and no daemon are refused with clear messages")
    func refusals() throws {
        let daemon = try DaemonProcess(config: daemonConfig)
        try daemon.start()

        // A second daemon on the same socket refuses to start; the first keeps serving.
        let second = try TestHost.run(DaemonProcess.samepaged, daemon.arguments)
        #expect(second.status != 0 && second.output.contains("already running"), "\(second.output)")
        #expect(try daemon.cli("stats").status == 0)
        // A second daemon on another socket but the same pause journal refuses too (one journal,
        // one owner), naming the first; and --resume-paused leaves that journal to it.
        let otherSocket = "\(daemon.directory)/other.sock"
        let sameJournal = try TestHost.run(
            DaemonProcess.samepaged, daemon.arguments.map { $0 == daemon.socket ? otherSocket : $0 })
        #expect(sameJournal.status != 0 && sameJournal.output.contains("is in use by another samepaged (pid \(daemon.pid))"),
                "\(sameJournal.output)")
        #expect(try daemon.cli("stats").status == 0)

        // A non-root user is refused by the socket.
        let nobody = try TestHost.run("/usr/bin/setpriv", [
            "--reuid=nobody", "--regid=nogroup", "--clear-groups", DaemonProcess.samepage, "--socket", daemon.socket, "stats",
        ])
        #expect(nobody.status != 0 && nobody.output.lowercased().contains("permission"), "\(nobody.output)")

        #expect(daemon.stop() == 0)
        let none = try daemon.cli("stats")
        #expect(none.status == 1 && none.output.contains("not running"), "\(none.output)")

        // Configuration files: unknown keys, wrong types, out of range, random bytes: the
        // daemon refuses to start and names the file and line.
        let cases: [(String, String)] = [
            ("[scan]\nadvisor_mode = \"none\"\npages_to_scan = 10\nbogus = 1\n", "samepaged.toml:4"),
            ("[scan]\n\nsleep_millisecs = \"soon\"\n", "samepaged.toml:3"),
            ("[scan]\nmax_page_sharing = 1\n", "samepaged.toml:2"),
            ("[libvirt\nuri = 3\n", "samepaged.toml:1"),
        ]
        for (text, expected) in cases {
            try text.write(toFile: daemon.configFile, atomically: true, encoding: .utf8)
            let result = try TestHost.run(DaemonProcess.samepaged, daemon.arguments)
            #expect(result.status != 0 && result.output.contains(expected), "\(text): \(result.output)")
        }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<5 {
            try Data((0..<2000).map { _ in UInt8.random(in: 0...255, using: &rng) }).write(to: URL(fileURLWithPath: daemon.configFile))
            let result = try TestHost.run(DaemonProcess.samepaged, daemon.arguments)
            #expect(result.status != 0 && result.output.contains("samepaged.toml"), "\(result.output)")
        }
        let missing = try TestHost.run(DaemonProcess.samepaged, ["--config", "/nonexistent/samepaged.toml"])
        #expect(missing.status != 0 && missing.output.contains("/nonexistent/samepaged.toml"))
    }
}

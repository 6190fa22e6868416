import Glibc
import Foundation
import Libvirt
import SamepageAgent
import Testing

/// A samepaged started by a test, with its own socket, policy directory and log.
final class DaemonProcess {
    static let products = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    static var samepaged: String { products.appendingPathComponent("samepaged").path }
    static var samepage: String { products.appendingPathComponent("samepage").path }

    let directory: String
    var socket: String { "\(directory)/samepaged.sock" }
    var policies: String { "\(directory)/guests.d" }
    var configFile: String { "\(directory)/samepaged.toml" }
    var logFile: String { "\(directory)/samepaged.log" }
    private(set) var pid: pid_t = 0

    init(config: String) throws {
        directory = "/tmp/samepage-e2e-daemon-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        mkdir(directory, 0o755)
        mkdir(policies, 0o755)
        try config.write(toFile: configFile, atomically: true, encoding: .utf8)
    }

    var arguments: [String] {
        ["--config", configFile, "--socket", socket, "--policy-dir", policies, "--pause-journal", "\(directory)/paused.json"]
    }

    func start() throws {
        pid = try TestHost.spawn(Self.samepaged, arguments, output: logFile)
        guard eventually(timeout: .seconds(20), { access(socket, F_OK) == 0 }) else {
            throw TestHost.ScriptFailed(description: "samepaged did not open its socket:\n\(log)")
        }
    }

    /// SIGTERM, then the exit status.
    /// SIGKILL, as a crash would end it.
    func kill9() {
        guard pid > 0 else { return }
        kill(pid, SIGKILL)
        _ = TestHost.wait(pid)
        pid = 0
    }

    func stop() -> Int32 {
        guard pid > 0 else { return 0 }
        kill(pid, SIGTERM)
        defer { pid = 0 }
        return TestHost.wait(pid)
    }

    var log: String { (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "" }

    /// Runs `samepage --socket SOCKET ARGS...`.
    func cli(_ arguments: String...) throws -> (status: Int32, output: String) {
        try TestHost.run(Self.samepage, ["--socket", socket] + arguments)
    }

    /// Runs a reading command with `--json` and parses its output.
    func json(_ arguments: String...) throws -> Any {
        let result = try TestHost.run(Self.samepage, ["--socket", socket] + arguments + ["--json"])
        guard result.status == 0 else { throw TestHost.ScriptFailed(description: "samepage \(arguments): \(result.output)") }
        return try JSONSerialization.jsonObject(with: Data(result.output.utf8))
    }

    func guests() throws -> [[String: Any]] { try json("list") as! [[String: Any]] }
    func stats() throws -> [String: Any] { try json("stats") as! [String: Any] }
    func guest(_ name: String) throws -> [String: Any]? { try guests().first { $0["name"] as? String == name } }

    func writePolicy(_ name: String, _ text: String) throws {
        try text.write(toFile: "\(policies)/\(name).toml", atomically: true, encoding: .utf8)
    }

    deinit {
        _ = stop()
        _ = try? FileManager.default.removeItem(atPath: directory)
    }
}

let daemonConfig = """
    [metrics]
    address = ""
    [scan]
    advisor_mode = "none"
    pages_to_scan = 2000
    sleep_millisecs = 10
    max_page_sharing = 0
    smart_scan = false
    [policy.default]
    mode = "off"
    [reclaim]
    # Tests of what reclaim does, not of when: deferral for CPU pressure is off here (the
    # test machine's own load would make its timing theirs) and tested on its own in
    # BusyHostEndToEndTests.
    max_cpu_pressure = 100
    """

let reportPolicy = "mode = \"report\"\ntrust_group = \"e2e\"\n"

func int(_ value: Any?) -> Int { (value as? NSNumber)?.intValue ?? -1 }

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

@Suite("End to end: zero-page reclaim in real guests", .serialized)
struct ReclaimEndToEndTests {
    @Test("Zero pages are given back: Shmem drops by what is reported, the guest runs on and its data is intact")
    func reclaimKeepsGuestData() throws {
        let name = "sp-e2e-r1"
        TestHost.removeGuests([name])
        defer { TestHost.removeGuests([name]) }
        // The data set (zero, mostly-zero, random and repeated pages in tmpfs, hashed and
        // re-checked every 2 s on the serial console) and 16 MiB of zero-filled files.
        try TestHost.startGuest(name, ram: "memfd", fill: 16, workload: "dataset")
        let expected = try String(contentsOfFile: "\(TestHost.stateDirectory)/dataset.md5", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(TestHost.serial(name).contains("SAMEPAGE-DATASET-HASH \(expected)"))

        let daemon = try DaemonProcess(config: daemonConfig)
        // A pause target and duty cycle loose enough that a busy machine's slow libvirt calls
        // don't stall the test (pause times with the defaults are a benchmark).
        try daemon.writePolicy(name, "mode = \"zero\"\nmax_pause_ms = 30\nmax_pause_ms_per_minute = 3000\n")
        let shmemBefore = TestHost.shmemBytes()
        try daemon.start()
        #expect(try eventually(timeout: .seconds(150)) {
            let reclaimed = try daemon.guest(name)?["zero_pages_reclaimed"]
            return int(reclaimed) >= 4096  // at least the 16 MiB of zero-filled files
        }, "\(daemon.log)")
        let guest = try #require(try daemon.guest(name))
        let reported = int(guest["bytes_reclaimed"])
        #expect(reported >= 16 << 20)
        let dropped = shmemBefore - TestHost.shmemBytes()
        #expect(dropped >= reported * 9 / 10, "Shmem dropped by \(dropped) bytes; reported reclaimed \(reported)")
        let reclaim = try #require(guest["reclaim"] as? [String: Any])
        #expect(reclaim["eligible"] as? Bool == true)
        #expect(int(reclaim["pauses"]) > 0)
        #expect(daemon.log.contains("audit: paused \(name)"))
        // Every pause is in the histogram; how many kept to max_pause_ms is a benchmark figure
        // (it depends on the machine's load), not asserted here.
        let histogram = try #require(reclaim["pause_histogram"] as? [Int])
        #expect(histogram.reduce(0, +) == int(reclaim["pauses"]))
        #expect(int(reclaim["pause_overruns"]) <= int(reclaim["pauses"]))

        // The guest runs and re-checks its data: every check after the reclaim matches.
        let checksBefore = TestHost.serial(name).components(separatedBy: "SAMEPAGE-DATASET-CHECK").count
        #expect(eventually(timeout: .seconds(30)) {
            TestHost.serial(name).components(separatedBy: "SAMEPAGE-DATASET-CHECK").count >= checksBefore + 2
        })
        let checks = TestHost.serial(name).split(whereSeparator: \.isNewline).filter { $0.hasPrefix("SAMEPAGE-DATASET-CHECK") }
        #expect(!checks.isEmpty)
        #expect(checks.allSatisfy { $0.contains(expected) }, "\(checks.filter { !$0.contains(expected) })")
        #expect(try daemon.guest(name)?["state"] as? String == "running")

        // The guest re-reads its data set every 2 s, zero-filled pages included: reclaimed
        // pages it reads again fault back in, and are counted as refaulted.
        #expect(try eventually(timeout: .seconds(30)) {
            int((try daemon.guest(name)?["reclaim"] as? [String: Any])?["zero_pages_refaulted"]) > 0
        })

        // run unmerge allocates the reclaimed ranges again: Shmem comes back, held pages go to 0.
        let held = int((try daemon.guest(name)?["reclaim"] as? [String: Any])?["pages_held"])
        #expect(held > 0)
        let shmemReclaimed = TestHost.shmemBytes()
        let unmerge = try daemon.cli("run", "unmerge")
        #expect(unmerge.status == 0 && unmerge.output.contains("allocated again"), "\(unmerge.output)")
        #expect(int((try daemon.guest(name)?["reclaim"] as? [String: Any])?["pages_held"]) == 0)
        let regrown = TestHost.shmemBytes() - shmemReclaimed
        #expect(regrown >= held * 4096 * 9 / 10, "Shmem grew by \(regrown) bytes for \(held) pages")
        #expect(try daemon.guest(name)?["state"] as? String == "running")

        // SIGTERM while the daemon is reclaiming (a pause may be under way): it finishes the
        // batch, resumes the guest, clears the journal, then exits.
        #expect(daemon.stop() == 0)
        let libvirt = try LibvirtConnection()
        let uuid = try #require(try libvirt.activeDomains().first { $0.name == name }?.uuid)
        #expect(try libvirt.domainInfo(uuid: uuid).state == .running)
        #expect(try PauseJournal(path: "\(daemon.directory)/paused.json").entries().isEmpty)
    }

    @Test("The host-wide cap on reclaimed bytes holds")
    func hostWideCap() throws {
        let name = "sp-e2e-cap"
        TestHost.removeGuests([name])
        defer { TestHost.removeGuests([name]) }
        try TestHost.startGuest(name, ram: "memfd", fill: 32)
        let cap = 8 << 20
        let daemon = try DaemonProcess(config: daemonConfig.replacingOccurrences(of: "[reclaim]\n", with: "[reclaim]\nmax_bytes = \(cap)\n"))
        // A generous pause budget: this test is about the cap, not about pacing.
        try daemon.writePolicy(name, "mode = \"zero\"\nmax_pause_ms = 100\nmax_pause_ms_per_minute = 6000\n")
        try daemon.start()
        func held() throws -> Int { int((try daemon.guest(name)?["reclaim"] as? [String: Any])?["pages_held"]) * 4096 }
        #expect(try eventually(timeout: .seconds(60)) { try held() >= cap }, "\(daemon.log.suffix(2000))")
        usleep(10_000_000)
        // Batches are cut to the room left under the cap. Without the cap, the 32 MiB of
        // zero-filled files would all go.
        let final = try held()
        #expect(final <= cap, "held \(final) bytes with a cap of \(cap)")
        #expect(daemon.stop() == 0)
    }

    @Test("kill -9 of samepaged while it has a guest paused: the next samepaged resumes it, and its data is intact")
    func killedInsidePause() throws {
        let name = "sp-e2e-k1"
        TestHost.removeGuests([name])
        defer { TestHost.removeGuests([name]) }
        try TestHost.startGuest(name, ram: "memfd", fill: 32, workload: "dataset")
        let expected = try String(contentsOfFile: "\(TestHost.stateDirectory)/dataset.md5", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let libvirt = try LibvirtConnection()
        let uuid = try #require(try libvirt.activeDomains().first { $0.name == name }?.uuid)

        let daemon = try DaemonProcess(config: daemonConfig)
        try daemon.writePolicy(name, "mode = \"zero\"\nmax_pause_ms_per_minute = 6000\n")
        let journal = "\(daemon.directory)/paused.json"
        // The journal is written just before each suspend and cleared after the resume: kill
        // the daemon the moment it shows a pause, until one kill lands inside a pause.
        var caught = false
        for _ in 0..<8 where !caught {
            // The guest runs, so an entry left by the last attempt's kill is stale.
            unlink(journal)
            try daemon.start()
            let deadline = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < deadline {
                if let text = try? String(contentsOfFile: journal, encoding: .utf8), text.contains(name) { break }
                usleep(200)
            }
            // The entry is written before the suspend call: let the call get under way.
            usleep(UInt32.random(in: 1_000...3_000))
            daemon.kill9()
            usleep(200_000)  // a suspend already sent still completes in libvirtd
            caught = try libvirt.domainInfo(uuid: uuid).state == .paused
        }
        try #require(caught, "no kill landed inside a pause; log:\n\(daemon.log.suffix(3000))")
        #expect(try PauseJournal(path: journal).entries().map(\.name) == [name])

        // A new samepaged resumes it within seconds.
        try daemon.start()
        #expect(eventually(timeout: .seconds(10)) { (try? libvirt.domainInfo(uuid: uuid).state) == .running })
        #expect(eventually { (try? PauseJournal(path: journal).entries().isEmpty) == true })
        #expect(daemon.stop() == 0)
        #expect(try libvirt.domainInfo(uuid: uuid).state == .running)

        // Nothing in the guest was lost: its data set still checks out.
        let checksBefore = TestHost.serial(name).components(separatedBy: "SAMEPAGE-DATASET-CHECK").count
        #expect(eventually(timeout: .seconds(30)) {
            TestHost.serial(name).components(separatedBy: "SAMEPAGE-DATASET-CHECK").count >= checksBefore + 2
        })
        let checks = TestHost.serial(name).split(whereSeparator: \.isNewline).filter { $0.hasPrefix("SAMEPAGE-DATASET-CHECK") }
        #expect(checks.allSatisfy { $0.contains(expected) })
    }

    @Test("A guest left paused by a samepaged that died is resumed at start; one paused by someone else is left alone")
    func journalResumesPausedGuests() throws {
        let names = ["sp-e2e-j1", "sp-e2e-j2"]
        TestHost.removeGuests(names)
        defer { TestHost.removeGuests(names) }
        for name in names { try TestHost.startGuest(name, ram: "memfd") }
        let libvirt = try LibvirtConnection()
        let domains = try libvirt.activeDomains()
        let ours = try #require(domains.first { $0.name == "sp-e2e-j1" }), theirs = try #require(domains.first { $0.name == "sp-e2e-j2" })
        try libvirt.suspend(uuid: ours.uuid)
        try libvirt.suspend(uuid: theirs.uuid)
        defer { try? libvirt.resume(uuid: theirs.uuid) }

        // What samepaged's journal holds when it was killed (kill -9) inside a pause.
        let daemon = try DaemonProcess(config: daemonConfig)
        try PauseJournal(path: "\(daemon.directory)/paused.json").willPause(.init(uuid: ours.uuid.uuidString.lowercased(), name: ours.name, since: Date().timeIntervalSince1970, target: .libvirt(domainID: ours.id)))
        try daemon.start()
        #expect(eventually(timeout: .seconds(10)) { (try? libvirt.domainInfo(uuid: ours.uuid).state) == .running })
        #expect(try libvirt.domainInfo(uuid: theirs.uuid).state == .paused)
        #expect(eventually { (try? PauseJournal(path: "\(daemon.directory)/paused.json").entries().isEmpty) == true })
        #expect(daemon.stop() == 0)

        // The same through `samepaged --resume-paused`, as the service manager runs it: with
        // the same configuration file and nothing else, the journal's path from reclaim.journal.
        try libvirt.suspend(uuid: ours.uuid)
        try PauseJournal(path: "\(daemon.directory)/paused.json").willPause(.init(uuid: ours.uuid.uuidString.lowercased(), name: ours.name, since: Date().timeIntervalSince1970, target: .libvirt(domainID: ours.id)))
        try daemonConfig.replacingOccurrences(of: "[reclaim]\n", with: "[reclaim]\njournal = \"\(daemon.directory)/paused.json\"\n")
            .write(toFile: daemon.configFile, atomically: true, encoding: .utf8)
        let result = try TestHost.run(DaemonProcess.samepaged, ["--config", daemon.configFile, "--resume-paused"])
        #expect(result.status == 0, "\(result.output)")
        #expect(try libvirt.domainInfo(uuid: ours.uuid).state == .running)
        #expect(try libvirt.domainInfo(uuid: theirs.uuid).state == .paused)
    }
}

import Glibc
import Foundation
import Libvirt
import SamepageAgent
import Testing

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

        // A restart keeps what was punched (the ledger beside the journal): the cap still counts
        // the earlier holes, so nothing more is reclaimed, and run unmerge refills them.
        #expect(FileManager.default.fileExists(atPath: "\(daemon.directory)/punched.json"))
        let shmemStopped = TestHost.shmemBytes()
        try daemon.start()
        #expect(try eventually(timeout: .seconds(60)) { try held() == final }, "\(daemon.log.suffix(2000))")
        #expect(daemon.log.contains("pages punched earlier are still counted as reclaimed"))
        usleep(10_000_000)
        let reclaimedSinceRestart = int(try daemon.guest(name)?["zero_pages_reclaimed"]) * 4096
        #expect(reclaimedSinceRestart <= cap - final, "reclaimed \(reclaimedSinceRestart) bytes more after a restart, \(final) held already, cap \(cap)")
        #expect(shmemStopped - TestHost.shmemBytes() <= cap - final + (1 << 20))
        let shmemBeforeUnmerge = TestHost.shmemBytes()
        let unmerge = try daemon.cli("run", "unmerge")
        #expect(unmerge.status == 0, "\(unmerge.output)")
        #expect(try eventually(timeout: .seconds(30)) { try held() == 0 })
        let regrown = TestHost.shmemBytes() - shmemBeforeUnmerge
        #expect(regrown >= final * 9 / 10, "Shmem grew by \(regrown) bytes after run unmerge; \(final) bytes were held before the restart")
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

        // The pausing thread raised (nice -10) during its pauses: samepaged's own thread only,
        // so a crash inside a pause leaves QEMU's threads as they were.
        let daemon = try DaemonProcess(config: daemonConfig.replacingOccurrences(of: "[reclaim]\n", with: "[reclaim]\npause_thread_nice = -10\n"))
        try daemon.writePolicy(name, "mode = \"zero\"\nmax_pause_ms_per_minute = 6000\n")
        let journal = "\(daemon.directory)/paused.json"
        let qemuNiceBefore = try threadNiceValues(of: TestHost.qemuPID(name))
        // The journal is written just before each suspend and cleared after the resume: kill
        // the daemon the moment it shows a pause, until one kill lands inside a pause.
        var caught = false
        for _ in 0..<8 where !caught {
            // The guest runs, so an entry left by the last attempt's kill is stale; without the
            // punch record, this samepaged's pauses are as large as the first one's.
            unlink(journal)
            unlink("\(daemon.directory)/punched.json")
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
        // QEMU starts and ends worker threads of its own: what is compared is the values.
        let qemuNiceAfter = try threadNiceValues(of: TestHost.qemuPID(name))
        #expect(!qemuNiceBefore.isEmpty && Set(qemuNiceAfter.values) == Set(qemuNiceBefore.values),
                "QEMU's threads' nice values: \(qemuNiceBefore) before, \(qemuNiceAfter) after")

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

/// The nice value of each thread of process `pid` (`/proc/PID/task/TID/stat`, field 19), by thread id.
private func threadNiceValues(of pid: pid_t) throws -> [Int: Int] {
    var values: [Int: Int] = [:]
    for task in try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") {
        guard let tid = Int(task), let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { continue }
        // Past the command name: field 3 is the state, so field 19 is the 17th after it.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        if fields.count > 16, let nice = Int(fields[16]) { values[tid] = nice }
    }
    return values
}

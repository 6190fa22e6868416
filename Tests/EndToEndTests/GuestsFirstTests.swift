import Glibc
import Foundation
import Libvirt
import SamepageAgent
import Synchronization
import Testing

/// The data set's checks on the serial console since `count` of them were seen all match.
private func datasetIntact(_ name: String, expected: String, after count: Int) -> Bool {
    let checks = TestHost.serial(name).split(whereSeparator: \.isNewline).filter { $0.hasPrefix("SAMEPAGE-DATASET-CHECK") }
    return checks.count > count && checks.allSatisfy { $0.contains(expected) }
}

private func datasetChecks(_ name: String) -> Int {
    TestHost.serial(name).split(whereSeparator: \.isNewline).filter { $0.hasPrefix("SAMEPAGE-DATASET-CHECK") }.count
}

private func expectedDatasetHash() throws -> String {
    try String(contentsOfFile: "\(TestHost.stateDirectory)/dataset.md5", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
}

/// Waits until samepaged's journal shows a pause of the guest under way (it is written just
/// before the suspend); false after 60 s without one.
private func waitForPause(of name: String, journal: String) -> Bool {
    let deadline = ContinuousClock.now + .seconds(60)
    while ContinuousClock.now < deadline {
        if let text = try? String(contentsOfFile: journal, encoding: .utf8), text.contains(name) { return true }
        usleep(200)
    }
    return false
}

private func reclaim(_ guest: [String: Any]?) -> [String: Any] { guest?["reclaim"] as? [String: Any] ?? [:] }

/// Counts the lifecycle events of one guest that libvirt delivers to a connection of the test.
private final class LifecycleCounter: Sendable {
    final class Counts: Sendable {
        let value = Mutex((suspended: 0, resumed: 0))
    }
    let counts = Counts()
    let subscription: EventSubscription
    let connection: LibvirtConnection

    var suspended: Int { counts.value.withLock { $0.suspended } }
    var resumed: Int { counts.value.withLock { $0.resumed } }

    init(uuid: UUID) throws {
        connection = try LibvirtConnection()
        let counts = self.counts
        subscription = try connection.observeEvents({ event in
            guard event.uuid == uuid else { return }
            switch event.event {
            case .suspended: counts.value.withLock { $0.suspended += 1 }
            case .resumed: counts.value.withLock { $0.resumed += 1 }
            default: break
            }
        }, onClose: { _ in })
    }
}

@Suite("End to end: guests come first on a host that changes", .serialized)
struct GuestsFirstEndToEndTests {
    @Test("Every policy transition applies live: no crash, the guest runs, each mode's effect shows, groups stay isolated")
    func policyTransitionMatrix() throws {
        let names = ["sp-e2e-m1", "sp-e2e-m2"]
        TestHost.removeGuests(names)
        defer { TestHost.removeGuests(names) }
        for name in names { try TestHost.startGuest(name, ram: "memfd", fill: 8, workload: "dataset") }
        let expected = try expectedDatasetHash()
        let checksAtStart = datasetChecks(names[0])

        let daemon = try DaemonProcess(config: daemonConfig)
        let loose = "max_pause_ms = 50\nmax_pause_ms_per_minute = 6000\n"
        try daemon.writePolicy(names[1], "mode = \"report\"\ntrust_group = \"g\"\n")
        try daemon.writePolicy(names[0], "mode = \"off\"\n")
        try daemon.start()
        let daemonPID = daemon.pid
        #expect(eventually { (try? daemon.guest(names[1]))?["mapped"] as? Bool == true })

        // All twelve transitions between the four modes, each once.
        let modes = ["off", "report", "zero", "merge", "off", "zero", "report", "merge", "zero", "off", "merge", "report", "off"]
        var previous = modes[0]
        for mode in modes.dropFirst() {
            let before = int(try daemon.guest(names[0])?["zero_pages_reclaimed"])
            try daemon.writePolicy(names[0], "mode = \"\(mode)\"\ntrust_group = \"g\"\n" + loose)
            let reload = try daemon.cli("policy", "reload")
            #expect(reload.status == 0, "\(previous) -> \(mode): \(reload.output)")
            #expect(kill(daemonPID, 0) == 0, "samepaged died on \(previous) -> \(mode):\n\(daemon.log.suffix(3000))")
            // The agent applies the reload between two batches and publishes it.
            #expect(eventually(timeout: .seconds(10)) { (try? daemon.guest(names[0]))?["mode"] as? String == mode })
            switch mode {
            case "off":
                #expect(eventually(timeout: .seconds(10)) { (try? daemon.guest(names[0]))?["mapped"] as? Bool == false },
                        "\(previous) -> off: still mapped")
            case "report":
                #expect(eventually(timeout: .seconds(10)) { (try? daemon.guest(names[0]))?["mapped"] as? Bool == true })
                let guest = try daemon.guest(names[0])
                #expect(reclaim(guest)["eligible"] as? Bool == false)
                #expect(guest?["mode"] as? String == "report")
            default:
                // Reclaim starts: new zero pages (the guest re-reads its zero-filled files, so
                // reclaimed ones come back) are punched within the phase. Pages that came back
                // fast make reclaim back off for 60 s (RefaultWatch): the phase allows for that.
                #expect(try eventually(timeout: .seconds(90)) {
                    int(try daemon.guest(names[0])?["zero_pages_reclaimed"]) > before
                }, "\(previous) -> \(mode): no reclaim; \(reclaim(try? daemon.guest(names[0])))\n\(daemon.log.suffix(3000))")
            }
            #expect(try daemon.guest(names[0])?["state"] as? String == "running")
            previous = mode
        }
        #expect(kill(daemonPID, 0) == 0)
        #expect(!daemon.log.contains("Fatal error"), "\(daemon.log.suffix(3000))")

        // Groups: in one group the two identical guests share pages; with trust_group removed,
        // the guest is a group of its own at once and shares nothing with the other.
        try daemon.writePolicy(names[0], "mode = \"report\"\ntrust_group = \"g\"\n")
        _ = try daemon.cli("policy", "reload")
        func sharedPair() throws -> Int {
            let matrix = try #require(try daemon.json("sharing") as? [String: Any])
            let guests = try #require(matrix["guests"] as? [String])
            let pages = try #require(matrix["pages"] as? [[Any]])
            guard let a = guests.firstIndex(of: names[0]), let b = guests.firstIndex(of: names[1]) else { return -1 }
            return int(pages[a][b])
        }
        #expect(try eventually(timeout: .seconds(60)) { try sharedPair() > 0 }, "\(String(describing: try? daemon.json("sharing")))")
        try daemon.writePolicy(names[0], "mode = \"report\"\n")
        _ = try daemon.cli("policy", "reload")
        #expect(try eventually(timeout: .seconds(5)) { try sharedPair() == 0 })
        let group = try daemon.guest(names[0])?["trust_group"]
        #expect(group == nil || group is NSNull, "\(String(describing: group))")
        usleep(3_000_000)  // a few more scans: still nothing shared across the groups
        #expect(try sharedPair() == 0)

        #expect(daemon.stop() == 0)
        #expect(eventually(timeout: .seconds(30)) { datasetIntact(names[0], expected: expected, after: checksAtStart + 1) },
                "data set checks: \(TestHost.serial(names[0]).suffix(2000))")
    }

    @Test("A pause by someone else is never ended by samepaged; an outside resume during a batch stops the punching")
    func outsidePausesAndResumes() throws {
        let name = "sp-e2e-o1"
        TestHost.removeGuests([name])
        defer { TestHost.removeGuests([name]) }
        try TestHost.startGuest(name, ram: "memfd", fill: 64, workload: "dataset")
        let expected = try expectedDatasetHash()
        let checksAtStart = datasetChecks(name)
        let libvirt = try LibvirtConnection()
        let uuid = try #require(try libvirt.activeDomains().first { $0.name == name }?.uuid)

        // Long pauses (a large batch per pause) so that a resume from outside can land inside one.
        let daemon = try DaemonProcess(config: daemonConfig)
        try daemon.writePolicy(name, "mode = \"zero\"\nmax_pause_ms = 400\nmax_pause_ms_per_minute = 20000\n")
        let journal = "\(daemon.directory)/paused.json"

        // An operator's pause before samepaged starts: left alone for as long as it lasts.
        try libvirt.suspend(uuid: uuid)
        try daemon.start()
        #expect(eventually(timeout: .seconds(20)) { (try? daemon.guest(name))?["mapped"] as? Bool == true })
        usleep(8_000_000)
        #expect(try libvirt.domainInfo(uuid: uuid).state == .paused)
        #expect(int(reclaim(try daemon.guest(name))["pauses"]) == 0)
        #expect((reclaim(try daemon.guest(name))["reason"] as? String)?.contains("not running") == true)
        try libvirt.resume(uuid: uuid)

        // Resume the guest ourselves the moment samepaged's journal shows a pause. Pages the
        // guest touched again are never punched again while its QEMU runs, and that record
        // (with the holes) outlives a restart in punched.json beside the journal: so each
        // attempt starts a new samepaged without it, for which the guest's zero pages are all
        // candidates again and the pauses as large as the first run's.
        var caught = false
        for attempt in 0..<8 where !caught {
            if attempt > 0 {
                #expect(daemon.stop() == 0)
                unlink("\(daemon.directory)/punched.json")
                try daemon.start()
            }
            // The first pause of a guest is a 64-page probe, too short to land in: the next
            // one is sized from its costs.
            guard eventually(timeout: .seconds(60), { int(reclaim(try? daemon.guest(name))["pauses"]) >= 1 }),
                waitForPause(of: name, journal: journal)
            else { continue }
            usleep(4_000)  // into the batch: libvirt runs our resume after samepaged's suspend
            try? libvirt.resume(uuid: uuid)
            usleep(1_000_000)
            caught = daemon.log.contains("during our pause; punching stopped, not resuming it")
            #expect(try libvirt.domainInfo(uuid: uuid).state == .running)
        }
        #expect(caught, "no outside resume landed inside a pause:\n\(daemon.log.suffix(3000))")
        #expect(try libvirt.domainInfo(uuid: uuid).state == .running)
        #expect(int(reclaim(try daemon.guest(name))["pauses_stopped_early"]) > 0 || !caught)
        #expect(eventually { (try? PauseJournal(path: journal).entries().isEmpty) == true })

        // An operator pauses again while samepaged runs: samepaged does not resume it.
        try libvirt.suspend(uuid: uuid)
        let pausesBefore = int(reclaim(try daemon.guest(name))["pauses"])
        usleep(6_000_000)
        #expect(try libvirt.domainInfo(uuid: uuid).state == .paused)
        #expect(int(reclaim(try daemon.guest(name))["pauses"]) == pausesBefore)
        try libvirt.resume(uuid: uuid)
        #expect(daemon.stop() == 0)
        #expect(try libvirt.domainInfo(uuid: uuid).state == .running)
        #expect(eventually(timeout: .seconds(30)) { datasetIntact(name, expected: expected, after: checksAtStart + 1) },
                "\(TestHost.serial(name).suffix(2000))")
    }

    @Test("libvirtd stopped (SIGSTOP) inside a pause: the pause ends once libvirtd answers, the guest resumes")
    func libvirtdStoppedInsidePause() throws {
        let name = "sp-e2e-s1"
        TestHost.removeGuests([name])
        defer { TestHost.removeGuests([name]) }
        try TestHost.startGuest(name, ram: "memfd", fill: 64, workload: "dataset")
        let expected = try expectedDatasetHash()
        let checksAtStart = datasetChecks(name)
        let libvirtd = try #require(TestHost.libvirtdPID())
        let daemon = try DaemonProcess(config: daemonConfig)
        try daemon.writePolicy(name, "mode = \"zero\"\nmax_pause_ms = 400\nmax_pause_ms_per_minute = 20000\n")
        let journal = "\(daemon.directory)/paused.json"
        try daemon.start()

        var landed = false
        for attempt in 0..<8 where !landed {
            if attempt > 0 {
                #expect(daemon.stop() == 0)
                try daemon.start()
            }
            guard waitForPause(of: name, journal: journal) else { continue }
            usleep(UInt32.random(in: 1_000...20_000))
            kill(libvirtd, SIGSTOP)
            usleep(4_000_000)  // longer than the 2 s bound on each libvirt call of a pause
            kill(libvirtd, SIGCONT)
            // The pause ends within its bound once libvirtd answers (retries back off to 5 s).
            let libvirt = try LibvirtConnection()
            let uuid = try #require(try libvirt.activeDomains().first { $0.name == name }?.uuid)
            #expect(eventually(timeout: .seconds(15)) { (try? libvirt.domainInfo(uuid: uuid).state) == .running },
                    "\(daemon.log.suffix(3000))")
            #expect(eventually(timeout: .seconds(15)) { (try? PauseJournal(path: journal).entries().isEmpty) == true })
            landed = daemon.log.contains("did not return within")
        }
        #expect(landed, "no SIGSTOP landed inside a libvirt call of a pause:\n\(daemon.log.suffix(3000))")
        #expect(kill(daemon.pid, 0) == 0)
        // The status follows the journal within a publish (the journal is cleared first).
        #expect(eventually(timeout: .seconds(5)) {
            guard let guest = try? daemon.guest(name) else { return false }
            return reclaim(guest)["resume_failure"] == nil
        },
                "\(daemon.log.suffix(3000))")
        #expect(daemon.stop() == 0)
        #expect(eventually(timeout: .seconds(30)) { datasetIntact(name, expected: expected, after: checksAtStart + 1) })
    }

    @Test("samepage guests --mode zero pauses nothing, punches nothing and leaves the pause journal alone")
    func guestsCommandIsReadOnly() throws {
        let name = "sp-e2e-g1"
        TestHost.removeGuests([name])
        defer { TestHost.removeGuests([name]) }
        try TestHost.startGuest(name, ram: "memfd", fill: 16)
        let libvirt = try LibvirtConnection()
        let uuid = try #require(try libvirt.activeDomains().first { $0.name == name }?.uuid)
        let events = try LifecycleCounter(uuid: uuid)
        let journal = PauseJournal.defaultPath
        var before = stat()
        let journalExisted = stat(journal, &before) == 0
        let shmemBefore = TestHost.shmemBytes()

        for mode in ["zero", "merge"] {
            let result = try TestHost.run(DaemonProcess.samepage, ["guests", "--mode", mode, "--passes", "3", "--json"])
            #expect(result.status == 0, "\(result.output)")
            let listing = try #require(try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any])
            let guests = try #require(listing["guests"] as? [[String: Any]])
            let guest = try #require(guests.first { $0["name"] as? String == name })
            #expect(guest["mapped"] as? Bool == true)
            #expect(int(guest["zero_pages"]) >= 4096, "the 16 MiB of zero-filled files are counted")
            #expect(int(reclaim(guest)["pauses"]) == 0)
            #expect(int(guest["zero_pages_reclaimed"]) == 0)
        }
        usleep(500_000)
        #expect(events.suspended == 0)
        #expect(events.resumed == 0)
        #expect(try libvirt.domainInfo(uuid: uuid).state == .running)
        // Nothing was punched: host Shmem did not drop by the zero-filled files' 16 MiB.
        #expect(TestHost.shmemBytes() > shmemBefore - (8 << 20))
        var after = stat()
        let journalExists = stat(journal, &after) == 0
        #expect(journalExists == journalExisted)
        if journalExisted && journalExists { #expect(after.st_mtim.tv_sec == before.st_mtim.tv_sec && after.st_mtim.tv_nsec == before.st_mtim.tv_nsec) }
    }

    @Test("A corrupt, unknown-format or unreadable pause journal stops samepaged and --resume-paused loudly, naming the file")
    func corruptJournal() throws {
        let daemon = try DaemonProcess(config: daemonConfig)
        let journal = "\(daemon.directory)/paused.json"
        defer { unlink(journal) }
        for content in ["{ this is not json", "{\"format\": 99, \"pauses\": []}", "[{\"uuid\": 1}]"] {
            try content.write(toFile: journal, atomically: true, encoding: .utf8)
            let start = try TestHost.run(DaemonProcess.samepaged, daemon.arguments)
            #expect(start.status != 0, "samepaged served with journal \(content)")
            #expect(start.output.contains(journal), "\(start.output)")
            #expect(access(daemon.socket, F_OK) != 0, "the control socket must not be left behind")
            let resume = try TestHost.run(DaemonProcess.samepaged, daemon.arguments + ["--resume-paused"])
            #expect(resume.status != 0)
            #expect(resume.output.contains(journal), "\(resume.output)")
        }
        // A journal whose path the configuration no longer names is still replayed by
        // --resume-paused (the index), so an edit cannot hide a live entry.
        try "{\"format\": 2, \"pauses\": [{\"uuid\": \"00000000-0000-0000-0000-00000000abcd\", \"name\": \"gone\", \"since\": 0, \"domain_id\": 7}]}"
            .write(toFile: journal, atomically: true, encoding: .utf8)
        let index = try JournalIndex().journals()
        #expect(index.contains(journal), "\(index)")
        let other = "\(daemon.directory)/other.json"
        let replay = try TestHost.run(DaemonProcess.samepaged, ["--config", daemon.configFile, "--pause-journal", other, "--resume-paused"])
        #expect(replay.status == 0, "\(replay.output)")
        #expect(replay.output.contains("gone"), "\(replay.output)")
        #expect(try PauseJournal(path: journal).entries().isEmpty)
    }

    @Test("A hugepage guest is scanned, and its zero pages are reclaimed by whole huge pages only, counted from what was freed")
    func hugepageGuest() throws {
        let name = "sp-e2e-h1"
        TestHost.removeGuests([name])
        defer { TestHost.removeGuests([name]) }
        try TestHost.startGuest(name, ram: "hugepages", memory: 192, fill: 32, workload: "dataset")
        let expected = try expectedDatasetHash()
        let checksAtStart = datasetChecks(name)
        let daemon = try DaemonProcess(config: daemonConfig)
        // Without reclaim_hugetlbfs: scanned, never reclaimed.
        try daemon.writePolicy(name, "mode = \"zero\"\n")
        try daemon.start()
        #expect(try eventually(timeout: .seconds(60)) { int(try daemon.guest(name)?["full_scans"]) >= 2 })
        let guarded = try #require(try daemon.guest(name))
        #expect((guarded["backend"] as? String)?.contains("hugetlbfs") == true, "\(guarded)")
        #expect(int(guarded["zero_pages"]) > 0)
        #expect((reclaim(guarded)["reason"] as? String)?.contains("hugetlbfs") == true)
        #expect(int(guarded["zero_pages_reclaimed"]) == 0)

        let freeBefore = TestHost.meminfo("HugePages_Free")
        try daemon.writePolicy(name, "mode = \"zero\"\nreclaim_hugetlbfs = true\nmax_pause_ms = 100\nmax_pause_ms_per_minute = 6000\n")
        #expect(try daemon.cli("policy", "reload").status == 0)
        #expect(try eventually(timeout: .seconds(120)) { int(try daemon.guest(name)?["zero_pages_reclaimed"]) >= 512 },
                "\(reclaim(try? daemon.guest(name)))\n\(daemon.log.suffix(3000))")
        usleep(3_000_000)
        let guest = try #require(try daemon.guest(name))
        let pages = int(guest["zero_pages_reclaimed"]), bytes = int(guest["bytes_reclaimed"])
        // Whole 2 MiB pages only: 512 base pages each, and every one of them freed.
        #expect(pages % 512 == 0, "\(pages) pages reclaimed")
        #expect(bytes == pages * 4096, "\(bytes) bytes for \(pages) pages")
        let freed = TestHost.meminfo("HugePages_Free") - freeBefore
        print("hugepage guest: \(pages) pages reclaimed, \(bytes) bytes, HugePages_Free +\(freed), refaulted \(int(reclaim(guest)["zero_pages_refaulted"]))")
        print(daemon.log.split(separator: "\n").filter { $0.contains("audit:") }.prefix(3).joined(separator: "\n"))
        #expect(freed * 512 >= pages - int(reclaim(guest)["zero_pages_refaulted"]), "HugePages_Free grew by \(freed)")
        #expect(try daemon.guest(name)?["state"] as? String == "running")
        #expect(daemon.stop() == 0)
        #expect(eventually(timeout: .seconds(30)) { datasetIntact(name, expected: expected, after: checksAtStart + 1) },
                "\(TestHost.serial(name).suffix(2000))")
    }
}

import Glibc
import Foundation
import SamepageAgent
import Testing

private func temporaryDirectory() -> String {
    let path = "/tmp/samepage-journal-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    mkdir(path, 0o700)
    return path
}

@Suite("Pause journal")
struct PauseJournalTests {
    @Test("A pause is recorded with its QEMU run and cleared on resume; the file carries format 2")
    func recordAndClear() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let journal = PauseJournal(path: "\(directory)/paused.json")
        #expect(try journal.entries().isEmpty)
        try journal.willPause(.init(uuid: "a", name: "guest-a", since: 1, target: .libvirt(domainID: 12)))
        try journal.willPause(.init(uuid: "b", name: "guest-b", since: 2, target: .libvirt(domainID: nil)))
        let entries = try journal.entries()
        #expect(entries.map(\.uuid) == ["a", "b"])
        #expect(entries.first?.target == .libvirt(domainID: 12))
        let text = try String(contentsOfFile: journal.path, encoding: .utf8)
        #expect(text.contains("\"format\":2"))
        #expect(text.contains("\"domain_id\":12"))
        try journal.didResume(uuid: "a")
        #expect(try journal.entries().map(\.uuid) == ["b"])
    }

    @Test("A pause over QMP is journalled as format 3 with what finds its QEMU again; format 2 once it is gone")
    func qmpPausesMakeFormatThree() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let journal = PauseJournal(path: "\(directory)/paused.json")
        try journal.willPause(.init(uuid: "a", name: "libvirt-guest", since: 1, target: .libvirt(domainID: 3)))
        let target = PauseJournal.QMPTarget(socket: "/run/qemu-server/101.qmp", pid: 4242, startTime: 777)
        try journal.willPause(.init(uuid: "b", name: "proxmox-guest", since: 2, target: .qmp(target)))
        let text = try String(contentsOfFile: journal.path, encoding: .utf8)
        #expect(text.contains("\"format\":3"))
        #expect(text.contains("\"start_time\":777"))
        #expect(try journal.entries().map(\.target) == [.libvirt(domainID: 3), .qmp(target)])
        try journal.didResume(uuid: "b")
        #expect(try String(contentsOfFile: journal.path, encoding: .utf8).contains("\"format\":2"))
    }

    @Test("The first format, a bare array, is still read")
    func firstFormat() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/paused.json"
        try "[{\"uuid\":\"u\",\"name\":\"old\",\"since\":1.5}]".write(toFile: path, atomically: true, encoding: .utf8)
        let entries = try PauseJournal(path: path).entries()
        #expect(entries == [PauseJournal.Entry(uuid: "u", name: "old", since: 1.5, target: .libvirt(domainID: nil))])
    }

    @Test("Corrupt and unknown-format journals throw, naming the file", arguments: [
        "{ not json", "{\"format\": 4, \"pauses\": []}", "[{\"uuid\": 1}]", "{\"pauses\": []}",
    ])
    func corrupt(content: String) throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/paused.json"
        try content.write(toFile: path, atomically: true, encoding: .utf8)
        let error = #expect(throws: JournalError.self) { try PauseJournal(path: path).entries() }
        #expect(error?.description.contains(path) == true)
        // Nothing is written over a journal that cannot be read.
        #expect(throws: JournalError.self) { try PauseJournal(path: path).willPause(.init(uuid: "x", name: "x", since: 1, target: .libvirt(domainID: 1))) }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == content)
    }

    @Test("The index lists each journal once, never the default one, and drops journals whose files are gone")
    func index() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let index = JournalIndex(path: "\(directory)/journals.json")
        let one = "\(directory)/one.json", two = "\(directory)/two.json"
        try PauseJournal(path: one).willPause(.init(uuid: "a", name: "a", since: 1, target: .libvirt(domainID: 1)))
        try PauseJournal(path: two).willPause(.init(uuid: "b", name: "b", since: 1, target: .libvirt(domainID: 2)))
        try index.register(one)
        try index.register(one)
        try index.register(PauseJournal.defaultPath)
        try index.register(two)
        #expect(try index.journals() == [one, two])
        #expect(try index.journalsToReplay(configured: "/elsewhere.json") == ["/elsewhere.json", PauseJournal.defaultPath, one, two])
        unlink(one)
        #expect(try index.journals() == [two])
        try "garbage".write(toFile: index.path, atomically: true, encoding: .utf8)
        #expect(throws: JournalError.self) { try index.journals() }
    }
}

@Suite("Agent lifecycle")
struct AgentLifecycleTests {
    @Test("An agent whose journal cannot be read ends on its own, failed, naming the journal")
    func failsOnCorruptJournal() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/paused.json"
        try "{ corrupt".write(toFile: path, atomically: true, encoding: .utf8)
        var configuration = AgentConfiguration()
        configuration.uri = "test:///default"
        configuration.pauseJournal = path
        let agent = Agent(configuration: configuration)
        agent.start()
        let exit = await agent.exited()
        guard case .failed(let why) = exit else {
            Issue.record("agent ended \(exit)")
            return
        }
        #expect(why.contains(path))
    }

    @Test("An agent asked to stop ends stopped")
    func stopsWhenAsked() async throws {
        var configuration = AgentConfiguration()
        configuration.uri = "test:///default"
        configuration.pauseJournal = nil
        let agent = Agent(configuration: configuration)
        agent.start()
        usleep(200_000)
        agent.requestStop()
        #expect(await agent.exited() == .stopped)
    }
}

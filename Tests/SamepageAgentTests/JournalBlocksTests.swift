import Glibc
import Foundation
@testable import SamepageAgent
import Testing

@Suite("Pause journal: an entry that cannot be cleared blocks its domain")
struct JournalBlocksTests {
    private func temporaryDirectory() -> String {
        let path = "/tmp/samepage-journal-blocks-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        mkdir(path, 0o700)
        return path
    }

    @Test("a failed clear blocks replay and new pauses of that guest until the entry is removed by hand")
    func blockedUntilRemovedByHand() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let journal = PauseJournal(path: "\(directory)/paused.json")
        let entry = PauseJournal.Entry(uuid: "6b1c7e2a-0000-4000-8000-000000000001", name: "db1", since: 1, target: .libvirt(domainID: 7))
        let other = PauseJournal.Entry(uuid: "6b1c7e2a-0000-4000-8000-000000000002", name: "web", since: 2, target: .libvirt(domainID: 8))
        try journal.willPause(entry)
        try journal.willPause(other)
        #expect(journal.replayBlock(entry) == nil)

        // The journal cannot be rewritten: its temporary file's name is taken by a directory
        // (root ignores file modes, so a read-only directory would not do).
        let temporary = "\(journal.path).tmp.\(getpid())"
        #expect(mkdir(temporary, 0o700) == 0)
        #expect(journal.clearAfterEnd(uuid: entry.uuid) != nil)
        #expect(try journal.entries().map(\.uuid) == [entry.uuid, other.uuid])
        // The marker says so for the processes after this one.
        let marker = try String(contentsOfFile: "\(journal.path).blocked", encoding: .utf8)
        #expect(marker == "\(entry.uuid)\n")
        rmdir(temporary)

        // Replay refuses it, saying how to resolve it; the other guest's entry is not blocked.
        let why = try #require(journal.replayBlock(entry))
        #expect(why.contains("could not be cleared after its pause ended"))
        #expect(why.contains("remove the entry with uuid \(entry.uuid) from \(journal.path)"))
        #expect(journal.replayBlock(other) == nil)
        #expect(throws: JournalReplayError.self) {
            _ = try endJournalledPause(entry, journal: journal, connection: nil, qmpTimeout: .milliseconds(10))
        }
        // A new pause of that guest is refused; of another, allowed.
        #expect(throws: JournalError.self) { try journal.willPause(entry) }
        try journal.willPause(other)

        // Removed by hand (the file rewritten without it): the block lifts, the marker goes.
        let data = try Data(contentsOf: URL(fileURLWithPath: journal.path))
        var file = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        file["pauses"] = (file["pauses"] as? [[String: Any]])?.filter { $0["uuid"] as? String != entry.uuid }
        try JSONSerialization.data(withJSONObject: file).write(to: URL(fileURLWithPath: journal.path))
        #expect(journal.replayBlock(entry) == nil)
        #expect(!FileManager.default.fileExists(atPath: "\(journal.path).blocked"))
        try journal.willPause(entry)
        #expect(try journal.entries().map(\.uuid).sorted() == [entry.uuid, other.uuid])
    }

    @Test("a block kept only in the marker (a new process) still holds")
    func markerAloneHolds() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let journal = PauseJournal(path: "\(directory)/paused.json")
        let entry = PauseJournal.Entry(uuid: "6b1c7e2a-0000-4000-8000-000000000003", name: "db3", since: 1, target: .libvirt(domainID: 9))
        try journal.willPause(entry)
        try "\(entry.uuid)\n".write(toFile: "\(journal.path).blocked", atomically: false, encoding: .utf8)
        #expect(journal.replayBlock(entry) != nil)
        #expect(throws: JournalError.self) { try journal.willPause(entry) }
    }
}

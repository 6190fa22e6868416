import Foundation
import Synchronization

// # An entry that cannot be cleared
//
// A journal entry says "samepaged paused this guest's QEMU run and has not ended that pause".
// Once the pause has ended (resumed, or found not to be ours) the entry must go; if the
// journal cannot be written then (a full or read-only disk), the entry stays, and a later
// replay (the next start, `samepaged --resume-paused`) would read it as a pause still ours:
// if an operator has paused the same QEMU run meanwhile, that replay would resume the
// operator's pause. So an entry whose clearing failed is *blocked*: no replay acts on it and
// no new pause of that guest is journalled, until someone removes the entry by hand.
//
// The block is kept in memory for this process and, best effort, in `JOURNAL.blocked` (one
// UUID a line) for the processes after it. A block holds only while the journal still has an
// entry for that UUID: removing the entry by hand is all it takes to lift it, and the marker's
// stale lines are dropped the next time it is read.

/// The entries of one pause journal that could not be cleared after their pause ended.
struct JournalBlocks: Sendable {
    /// The journal's path.
    let journal: String

    /// The marker file: one blocked UUID a line.
    var markerPath: String { journal + ".blocked" }

    /// This process's blocks, by journal path: they hold even when the marker cannot be written.
    private static let remembered = Mutex<[String: Set<String>]>([:])

    /// Blocks the entry of `uuid`: remembered here, and written to the marker if it can be.
    func block(_ uuid: String) {
        let uuids = Self.remembered.withLock { blocks in
            blocks[journal, default: []].insert(uuid)
            return blocks[journal]!
        }
        try? PauseJournal.writeDurably(Data((uuids.union(markerUUIDs()).sorted().joined(separator: "\n") + "\n").utf8), to: markerPath)
    }

    /// Whether the entry of `uuid` is blocked: marked (here or in the marker) while the journal
    /// (`entries`) still holds one for it.
    func isBlocked(_ uuid: String, entries: [PauseJournal.Entry]) -> Bool {
        guard entries.contains(where: { $0.uuid == uuid }) else {
            lift(uuid)
            return false
        }
        return Self.remembered.withLock { $0[journal]?.contains(uuid) ?? false } || markerUUIDs().contains(uuid)
    }

    /// Forgets the block of `uuid` (its entry is gone), in memory and in the marker.
    private func lift(_ uuid: String) {
        Self.remembered.withLock { _ = $0[journal]?.remove(uuid) }
        let marked = markerUUIDs()
        guard marked.contains(uuid) else { return }
        let left = marked.subtracting([uuid])
        if left.isEmpty {
            unlink(markerPath)
        } else {
            try? PauseJournal.writeDurably(Data((left.sorted().joined(separator: "\n") + "\n").utf8), to: markerPath)
        }
    }

    /// The UUIDs of the marker file (none when it is missing or unreadable).
    private func markerUUIDs() -> Set<String> {
        guard let data = FileManager.default.contents(atPath: markerPath) else { return [] }
        return Set(String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).map(String.init))
    }

    /// What the operator must do about a blocked entry.
    func howToResolve(_ entry: PauseJournal.Entry) -> String {
        "the pause journal entry of \(entry.name) (\(entry.uuid)) could not be cleared after its pause ended, so samepaged "
            + "neither replays it nor pauses \(entry.name) again: check the guest (virsh domstate \(entry.name), or qm status "
            + "for a Proxmox VE guest), resume it by hand if it should run, then remove the entry with uuid \(entry.uuid) from "
            + "\(journal) (a JSON file; samepaged stopped) and make sure the journal's directory can be written"
    }
}

extension PauseJournal {
    /// The blocked entries of this journal.
    var blocks: JournalBlocks { JournalBlocks(journal: path) }

    /// Blocks the entry of `uuid`, which could not be cleared (``JournalBlocks``).
    func blockUncleared(uuid: String) { blocks.block(uuid) }

    /// Clears the entry of `uuid` once its pause has ended; when the journal cannot be
    /// written, blocks the entry (``JournalBlocks``) and returns why.
    @discardableResult
    func clearAfterEnd(uuid: String) -> JournalError? {
        do {
            try didResume(uuid: uuid)
            return nil
        } catch {
            blocks.block(uuid)
            return error
        }
    }

    /// Why `entry` must not be replayed: it is blocked, with what to do about it; nil when it
    /// may be.
    func replayBlock(_ entry: Entry) -> String? {
        guard let entries = try? entries(), blocks.isBlocked(entry.uuid, entries: entries) else { return nil }
        return blocks.howToResolve(entry)
    }
}

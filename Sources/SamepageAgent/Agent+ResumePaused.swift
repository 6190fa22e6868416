import Foundation
import Libvirt
import Logging
import SamepageModel

/// Why a journalled pause could not be ended (the entry stays).
struct JournalReplayError: Error, CustomStringConvertible {
    var description: String
}

/// Ends one journalled pause by the transport that made it, if the guest is still in it, and
/// clears the entry (``LibvirtPauseTransport/endJournalled(_:domainID:connection:journal:)``,
/// ``QMPPauseTransport/endJournalled(_:target:journal:timeout:)``). Throws, keeping the
/// entry, when the guest's peer cannot answer.
func endJournalledPause(
    _ entry: PauseJournal.Entry, journal: PauseJournal, connection: LibvirtConnection?, qmpTimeout: Duration
) throws(JournalReplayError) -> PauseEnd {
    // An entry that could not be cleared after its pause ended is never replayed: its guest
    // may be paused by someone else by now.
    if let blocked = journal.replayBlock(entry) { throw JournalReplayError(description: blocked) }
    switch entry.target {
    case .libvirt(let domainID):
        guard let connection else { throw JournalReplayError(description: "libvirtd cannot be reached") }
        do { return try LibvirtPauseTransport.endJournalled(entry, domainID: domainID, connection: connection, journal: journal) } catch {
            throw JournalReplayError(description: error.description)
        }
    case .qmp(let target):
        do { return try QMPPauseTransport.endJournalled(entry, target: target, journal: journal, timeout: qmpTimeout) } catch {
            throw JournalReplayError(description: error.description)
        }
    }
}

extension Agent {
    /// `samepaged --resume-paused`: ends every pause the journals say samepaged made and the
    /// guest is still in, for the service manager to run after the daemon stopped, however it
    /// stopped. Replays `journal`, the default journal and every journal in the index. Returns
    /// how many entries could not be ended; throws when a journal cannot be read.
    public static func resumePaused(
        journal path: String, uri: String, index: JournalIndex = JournalIndex(), qmpTimeout: Duration = .seconds(1), logger: Logger
    ) throws -> Int {
        var unreadable: [JournalError] = []
        var work: [(PauseJournal, [PauseJournal.Entry])] = []
        var locks: [JournalLock] = []
        for journalPath in try index.journalsToReplay(configured: path) {
            let journal = PauseJournal(path: journalPath)
            do {
                let entries = try journal.entries()
                guard !entries.isEmpty else { continue }
                // A journal a running samepaged holds is its own to end: left alone.
                do { locks.append(try JournalLock.acquire(journal: journalPath)) } catch {
                    logger.notice("\(error); its pauses are that samepaged's to end")
                    continue
                }
                work.append((journal, entries))
            } catch {
                logger.critical("\(error)")
                unreadable.append(error)
            }
        }
        var left = 0
        // Pauses over QMP need no libvirtd (a Proxmox VE host has none): they are ended even
        // when libvirtd cannot be reached, and libvirt's entries then count as left.
        var connection: LibvirtConnection?
        if work.contains(where: { $0.1.contains { if case .libvirt = $0.target { true } else { false } } }) {
            if uri.isEmpty {
                logger.critical("the journal holds pauses made through libvirt, and libvirt is off (libvirt.uri = \"\"): set libvirt.uri to end them, or resume them with virsh")
            } else { do { connection = try LibvirtConnection(uri: uri) } catch {
                logger.critical("cannot connect to libvirt at \(uri): \(error)")
            } }
        }
        for (journal, entries) in work {
            for entry in entries {
                do {
                    let outcome = try endJournalledPause(entry, journal: journal, connection: connection, qmpTimeout: qmpTimeout)
                    logger.notice("\(entry.name): \(outcome)")
                } catch {
                    logger.critical("cannot resume \(entry.name), paused by samepaged: \(error)")
                    left += 1
                }
            }
        }
        withExtendedLifetime(locks) {}
        if let first = unreadable.first { throw first }
        return left
    }
}

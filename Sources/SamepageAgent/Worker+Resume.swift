import Foundation
import GuestMemory
import Libvirt
import Logging
import QMP
import SamepageCore
import SamepageModel
import Synchronization

/// Ending pauses: the resume at the end of each pause, the retries (with backoff) of those
/// that failed, the pauses journalled by an earlier samepaged, and the last attempts at stop.
extension Worker {
    /// Ends a pause of ours: resumes the guest and clears its journal entry; a resume that
    /// fails is retried with backoff (``resumePending()``) while the journal holds the pause.
    func endPause(_ guest: TrackedGuest, start: ContinuousClock.Instant) {
        guard let connection else {
            awaitResume(guest, call: nil, failure: "no libvirt connection")
            return
        }
        let uuid = guest.uuid
        let call = LibvirtCall { () throws(LibvirtError) in try connection.resume(uuid: uuid) }
        switch call.wait(configuration.libvirtCallTimeout) {
        case .success?:
            if let journal { clearJournal(guest, journal) }
        case .failure(let error)? where error.isOperationInvalid || error.isNoDomain:
            // Not paused any more (resumed by someone, or gone): nothing left to undo.
            if let journal { clearJournal(guest, journal) }
        case .failure(let error)?:
            logger.critical("guest \(guest.identity.name): resume failed: \(error); retrying with backoff")
            awaitResume(guest, call: nil, failure: "resume failed: \(error)")
        case nil:
            logger.critical("guest \(guest.identity.name): resume did not return within \(configuration.libvirtCallTimeout); retrying once libvirtd answers")
            awaitResume(guest, call: call, failure: "resume did not return within \(configuration.libvirtCallTimeout)")
        }
    }

    /// Clears the guest's journal entry once its pause is over or known not to be ours; a
    /// journal that cannot be written is said loudly (its stale entry would be replayed).
    func clearJournal(_ guest: TrackedGuest, _ journal: PauseJournal) {
        do { try journal.didResume(uuid: guest.identity.uuid) } catch {
            logger.critical("guest \(guest.identity.name): cannot clear its pause from the journal: \(error)")
        }
    }

    /// Puts a pause of ours on the list of pauses to end, retried with backoff.
    func awaitResume(_ guest: TrackedGuest, call: (any PendingCall)?, failure: String) {
        let entry = PauseJournal.Entry(uuid: guest.identity.uuid, name: guest.identity.name,
                                       since: Date().timeIntervalSince1970, domainID: guest.domainID,
                                       qmp: guest.qemu?.journalTarget)
        var pending = PendingResume(entry: entry, fromEarlierRun: false)
        pending.outstanding = call
        pending.failure = failure
        unresumed.removeAll { $0.entry.uuid == entry.uuid }
        unresumed.append(pending)
        guest.reclaimState.status.resumeFailure = failure
        publish()
    }

    /// Ends the pauses still to end (ours from this run, or journalled by an earlier run)
    /// whose next attempt is due, each only if the guest is still in our pause.
    func resumePending() {
        guard let journal else { return }
        let now = ContinuousClock.now
        var left: [PendingResume] = []
        for var pending in unresumed {
            // libvirt's guests wait for libvirtd; those paused over QMP need only their QEMU.
            if now < pending.nextAttempt || !(pending.outstanding?.isFinished ?? true)
                || (pending.entry.qmp == nil && connection == nil) {
                left.append(pending)
                continue
            }
            pending.outstanding = nil
            let timeout = configuration.libvirtCallTimeout
            let entry = pending.entry
            let name = pending.entry.name
            let result: Result<PauseEnd, any Error>?
            if let target = entry.qmp {
                // Bounded by the QMP timeout of each step: on this thread.
                let qmpTimeout = Duration.milliseconds(configuration.qemuGuests.qmpTimeoutMs)
                result = Result { () throws(QMPError) in try endJournalledQMPPause(entry, target: target, journal: journal, timeout: qmpTimeout) }
                    .mapError { $0 as any Error }
            } else if let connection {
                let call = LibvirtCall { () throws(LibvirtError) in
                    try endJournalledPause(entry, connection: connection, journal: journal)
                }
                result = call.wait(timeout).map { $0.mapError { $0 as any Error } }
                if result == nil { pending.outstanding = call }
            } else {
                result = nil
            }
            switch result {
            case .success(let outcome)?:
                logger.notice("\(name): \(outcome)")
                if let uuid = UUID(uuidString: pending.entry.uuid), let guest = guests[uuid] { guest.reclaimState.status.resumeFailure = nil }
                // The journal is clear already: show it now, not at the next 250 ms publish.
                publish()
                continue
            case .failure(let error)?:
                pending.failure = "resume failed: \(error)"
            case nil:
                pending.failure = "resume did not return within \(timeout)"
            }
            logger.critical("\(name), paused by samepaged: \(pending.failure!); next attempt in \(pending.delay)")
            pending.nextAttempt = now + pending.delay
            pending.delay = min(pending.delay * 2, .seconds(5))
            if let uuid = UUID(uuidString: pending.entry.uuid), let guest = guests[uuid] { guest.reclaimState.status.resumeFailure = pending.failure }
            left.append(pending)
        }
        unresumed = left
    }

    /// At stop: the pauses still to end get a few more attempts (5 s at most); what is left
    /// stays in the journal for `samepaged --resume-paused`.
    func finishPauses() {
        // 5 s, or up to 35 s while a suspend or resume of ours is still inside libvirtd (it
        // can wait 30 s for the domain's job lock): one that lands after we gave up would
        // leave a pause that the journal replay, seeing the guest running, has cleared.
        let start = ContinuousClock.now
        func deadlineReached() -> Bool {
            let outstanding = unresumed.contains { !($0.outstanding?.isFinished ?? true) }
            return ContinuousClock.now >= start + (outstanding ? .seconds(35) : .seconds(5))
        }
        while !unresumed.isEmpty && !deadlineReached() {
            // libvirtd only for libvirt's pauses: a host of QMP guests may have none.
            if connection == nil && unresumed.contains(where: { $0.entry.qmp == nil }) { self.connect() }
            resumePending()
            if !unresumed.isEmpty { usleep(50_000) }
        }
        for pending in unresumed {
            logger.critical("\(pending.entry.name) is still paused by samepaged (\(pending.failure ?? "not resumed yet")); the journal keeps it for samepaged --resume-paused")
        }
    }
}

/// A pause of samepaged's whose resume has not succeeded yet (or, from an earlier run's
/// journal, has not been tried yet).
struct PendingResume {
    var entry: PauseJournal.Entry
    var fromEarlierRun: Bool
    var nextAttempt = ContinuousClock.now
    var delay: Duration = .milliseconds(100)
    var failure: String?
    /// A call that did not return in time (a suspend or resume): no new attempt until it has.
    var outstanding: (any PendingCall)?
}

/// What ending a journalled pause did.
enum PauseEnd: CustomStringConvertible {
    case resumed, alreadyRunning, gone
    /// The guest is paused, but not in our pause: left alone.
    case notOurs(String)

    var description: String {
        switch self {
        case .resumed: "resumed (paused by samepaged)"
        case .alreadyRunning: "not paused any more; nothing to resume"
        case .gone: "gone; nothing to resume"
        case .notOurs(let why): "left paused: \(why)"
        }
    }
}

/// Ends one journalled pause if the guest is still in it, and clears the entry: the guest is
/// resumed only when it runs the same QEMU as when it was paused (domain id) and is paused by
/// a client (`PAUSED_USER`); any other pause (an I/O error, a migration, a new QEMU) is not
/// ours and is left as it is. Throws (keeping the entry) only when libvirt cannot answer.
func endJournalledPause(_ entry: PauseJournal.Entry, connection: LibvirtConnection, journal: PauseJournal) throws(LibvirtError) -> PauseEnd {
    guard let uuid = UUID(uuidString: entry.uuid) else {
        try? journal.didResume(uuid: entry.uuid)
        return .gone
    }
    let outcome: PauseEnd
    do {
        let info = try connection.domainInfo(uuid: uuid)
        if info.state != .paused {
            outcome = .alreadyRunning
        } else if info.pausedReason != .user {
            outcome = .notOurs("paused for another reason (\(info.pausedReason.map(\.description) ?? "unknown"))")
        } else if let id = entry.domainID, info.id != id {
            outcome = .notOurs("a new QEMU run (domain id \(info.id.map(String.init) ?? "none"), paused one was \(id))")
        } else {
            do {
                try connection.resume(uuid: uuid)
                outcome = .resumed
            } catch where error.isOperationInvalid {
                outcome = .alreadyRunning
            }
        }
    } catch where error.isNoDomain {
        outcome = .gone
    }
    try? journal.didResume(uuid: entry.uuid)
    return outcome
}

/// Ends one pause journalled for a guest outside libvirt, over its QMP socket, if the guest
/// is still in it, and clears the entry: the same QEMU (pid and start time), paused by a
/// client (`paused`); any other state (an I/O error, a migration's end, a panic) is not
/// ours. Throws (keeping the entry) when the monitor cannot be reached or does not answer:
/// busy with another client, or QEMU hung.
func endJournalledQMPPause(
    _ entry: PauseJournal.Entry, target: PauseJournal.QMPTarget, journal: PauseJournal, timeout: Duration
) throws(QMPError) -> PauseEnd {
    let startTime: UInt64?
    do { startTime = try QEMUGuestHandle.startTime(of: target.pid) } catch { throw .system(error) }
    guard startTime == target.startTime else {
        try? journal.didResume(uuid: entry.uuid)
        return .gone
    }
    var qmp = try QMPConnection.connect(path: target.socket, timeout: timeout)
    let status = try qmp.queryStatus(timeout: timeout)
    let outcome: PauseEnd
    switch status.status {
    case .running:
        outcome = .alreadyRunning
    case .paused:
        try qmp.cont(timeout: timeout)
        outcome = .resumed
    default:
        outcome = .notOurs("its QEMU is \(status.status), a state of QEMU's own")
    }
    try? journal.didResume(uuid: entry.uuid)
    return outcome
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
        for journalPath in try index.journalsToReplay(configured: path) {
            let journal = PauseJournal(path: journalPath)
            do {
                let entries = try journal.entries()
                if !entries.isEmpty { work.append((journal, entries)) }
            } catch {
                logger.critical("\(error)")
                unreadable.append(error)
            }
        }
        var left = 0
        // Pauses over QMP need no libvirtd (a Proxmox VE host has none): they are ended even
        // when libvirtd cannot be reached, and libvirt's entries then count as left.
        var connection: LibvirtConnection?
        var unreachable: (any Error)?
        if work.contains(where: { $0.1.contains { $0.qmp == nil } }) {
            do { connection = try LibvirtConnection(uri: uri) } catch { unreachable = error }
        }
        for (journal, entries) in work {
            for entry in entries {
                do {
                    let outcome: PauseEnd
                    if let target = entry.qmp {
                        outcome = try endJournalledQMPPause(entry, target: target, journal: journal, timeout: qmpTimeout)
                    } else if let connection {
                        outcome = try endJournalledPause(entry, connection: connection, journal: journal)
                    } else {
                        throw unreachable!
                    }
                    logger.notice("\(entry.name): \(outcome)")
                } catch {
                    logger.critical("cannot resume \(entry.name), paused by samepaged: \(error)")
                    left += 1
                }
            }
        }
        if let first = unreadable.first { throw first }
        return left
    }
}


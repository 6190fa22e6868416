import Foundation
import Libvirt
import Logging
import SamepageModel

/// Ending pauses that did not end by themselves: the retries (with backoff) of resumes that
/// failed, the pauses journalled by an earlier samepaged, and the last attempts at stop. Each
/// attempt runs on a blocking thread: a libvirtd or QEMU that does not answer holds its own
/// attempt, never the agent's thread.
extension Worker {
    /// Puts a pause of ours on the list of pauses to end, retried with backoff.
    func awaitResume(_ entry: PauseJournal.Entry, failure: String, outstanding: (any PendingCall)?) {
        var pending = PendingResume(entry: entry, fromEarlierRun: false)
        pending.outstanding = outstanding
        pending.failure = failure
        unresumed.removeAll { $0.entry.uuid == entry.uuid }
        unresumed.append(pending)
        if let uuid = UUID(uuidString: entry.uuid) { guests[uuid]?.reclaimState.status.resumeFailure = failure }
        publish()
    }

    /// Starts the attempts that are due and takes in those that have ended, for the pauses still
    /// to end (ours from this run, or journalled by an earlier run), each only if the guest is
    /// still in our pause.
    func resumePending() {
        guard let journal else { return }
        let now = ContinuousClock.now
        var left: [PendingResume] = []
        for var pending in unresumed {
            let name = pending.entry.name
            if let attempt = pending.attempt {
                guard let result = attempt.call.result else {
                    // Still inside libvirtd or QEMU: say so once it is late.
                    if now - attempt.started > attempt.timeout {
                        pending.failure = "resume did not return within \(attempt.timeout)"
                        setResumeFailure(pending)
                    }
                    left.append(pending)
                    continue
                }
                pending.attempt = nil
                switch result {
                case .success(let outcome):
                    logger.notice("\(name): \(outcome)")
                    if let uuid = UUID(uuidString: pending.entry.uuid) { guests[uuid]?.reclaimState.status.resumeFailure = nil }
                    // The journal is clear already: show it now, not at the next 250 ms publish.
                    publish()
                    continue
                case .failure(let error):
                    pending.failure = "resume failed: \(error)"
                }
                let delay = pending.backoff.next()
                logger.critical("\(name), paused by samepaged: \(pending.failure!); next attempt in \(delay)")
                pending.nextAttempt = now + delay
                setResumeFailure(pending)
                left.append(pending)
                continue
            }
            // libvirt's guests wait for libvirtd; those paused over QMP need only their QEMU.
            let connection = self.connection
            let needsLibvirt = if case .libvirt = pending.entry.target { true } else { false }
            if now < pending.nextAttempt || !(pending.outstanding?.isFinished ?? true) || (needsLibvirt && connection == nil) {
                left.append(pending)
                continue
            }
            pending.outstanding = nil
            let entry = pending.entry
            let qmpTimeout = Duration.milliseconds(configuration.qemuGuests.qmpTimeoutMs)
            pending.attempt = (
                BlockingCall { () throws(JournalReplayError) in
                    try endJournalledPause(entry, journal: journal, connection: connection, qmpTimeout: qmpTimeout)
                },
                now, needsLibvirt ? configuration.libvirtCallTimeout : qmpTimeout * 4)
            left.append(pending)
        }
        unresumed = left
    }

    private func setResumeFailure(_ pending: PendingResume) {
        if let uuid = UUID(uuidString: pending.entry.uuid) { guests[uuid]?.reclaimState.status.resumeFailure = pending.failure }
    }

    /// At stop: the pauses under way end (each is bounded), and the pauses still to end get a
    /// few more attempts (5 s at most); what is left stays in the journal for
    /// `samepaged --resume-paused`.
    func finishPauses() {
        // 5 s, or up to 35 s while a pause, a suspend or a resume of ours is still inside
        // libvirtd or QEMU (libvirtd can wait 30 s for the domain's job lock): one that lands
        // after we gave up would leave a pause that the journal replay, seeing the guest
        // running, has cleared.
        let start = ContinuousClock.now
        func deadlineReached() -> Bool {
            let outstanding = !pausesInFlight.isEmpty
                || unresumed.contains { !($0.outstanding?.isFinished ?? true) || $0.attempt != nil }
            return ContinuousClock.now >= start + (outstanding ? .seconds(35) : .seconds(5))
        }
        while !(unresumed.isEmpty && pausesInFlight.isEmpty) && !deadlineReached() {
            collectPauses()
            // libvirtd only for libvirt's pauses: a host of QMP guests may have none.
            if connection == nil && unresumed.contains(where: { if case .libvirt = $0.entry.target { true } else { false } }) {
                self.connect()
            }
            resumePending()
            if !(unresumed.isEmpty && pausesInFlight.isEmpty) { usleep(20_000) }
        }
        for inFlight in pausesInFlight.values {
            logger.critical("\(inFlight.identity.name): a pause of samepaged's has not ended; the journal keeps it for samepaged --resume-paused")
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
    var backoff = RetryBackoff()
    var failure: String?
    /// A call that did not return in time (a suspend or resume): no new attempt until it has.
    var outstanding: (any PendingCall)?
    /// The attempt under way, when it started and when it counts as late.
    var attempt: (call: BlockingCall<PauseEnd, JournalReplayError>, started: ContinuousClock.Instant, timeout: Duration)?
}

/// The waits between the attempts at ending a pause: 100 ms, doubled after each failure, at
/// most 5 s. Attempts never stop while the pause lasts.
struct RetryBackoff: Equatable {
    static let first: Duration = .milliseconds(100)
    static let limit: Duration = .seconds(5)
    private(set) var failures = 0

    /// The wait after one more failure.
    mutating func next() -> Duration {
        failures += 1
        return min(Self.limit, Self.first * (1 << min(failures - 1, 16)))
    }
}

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
            do { connection = try LibvirtConnection(uri: uri) } catch {
                logger.critical("cannot connect to libvirt at \(uri): \(error)")
            }
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

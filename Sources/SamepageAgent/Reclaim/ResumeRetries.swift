import Foundation
import Libvirt
import Logging
import SamepageModel

/// The pauses of ours that did not end by themselves, and the attempts at ending them: the
/// resumes that failed or did not return in time, and the pauses journalled by an earlier
/// samepaged. Attempts are retried with backoff (``RetryBackoff``) and never stop while the
/// pause lasts; each runs on a blocking thread, so a libvirtd or QEMU that does not answer
/// holds its own attempt, never the agent's thread.
///
/// Its own room because the list and its attempts are read by nothing else but the
/// eligibility of one guest (``failure(ofGuest:)``) and the published count.
struct ResumeRetries {
    let configuration: AgentConfiguration
    let logger: Logger
    /// The pauses still to end, in the order they were found.
    private(set) var pending: [PendingResume]

    /// The retries of the pauses an earlier samepaged journalled (`journalled`).
    init(journalled: [PauseJournal.Entry], configuration: AgentConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        pending = journalled.map { PendingResume(entry: $0, fromEarlierRun: true) }
    }

    var isEmpty: Bool { pending.isEmpty }
    var count: Int { pending.count }

    /// Why the pause of the guest with `uuid` (lowercased, as journalled) has not ended; nil
    /// when none of ours is left. A pause journalled by an earlier run not tried yet has none.
    func failure(ofGuest uuid: String) -> String? {
        pending.first(where: { $0.entry.uuid == uuid })?.failure
    }

    /// Whether an attempt, or a call an attempt waits for, is still inside libvirtd or QEMU.
    var callsUnderWay: Bool {
        pending.contains { !($0.outstanding?.isFinished ?? true) || $0.attempt != nil }
    }

    /// Whether a pause to end was made through libvirtd (it waits for a connection).
    var needsLibvirt: Bool {
        pending.contains { if case .libvirt = $0.entry.target { true } else { false } }
    }

    /// Puts a pause of ours on the list, to be ended with backoff; the guest says why.
    mutating func add(_ entry: PauseJournal.Entry, failure: String, outstanding: (any PendingCall)?, guests: [UUID: TrackedGuest]) {
        var retry = PendingResume(entry: entry, fromEarlierRun: false)
        retry.outstanding = outstanding
        retry.failure = failure
        pending.removeAll { $0.entry.uuid == entry.uuid }
        pending.append(retry)
        guest(of: retry, in: guests)?.reclaimState.setResumeFailure(failure)
    }

    /// Starts the attempts that are due and takes in those that have ended, each ending the
    /// pause only if the guest is still in it. libvirt's pauses wait for `connection`; those
    /// over QMP need only their QEMU.
    ///
    /// - Returns: Whether a pause ended (the journal is clear: publish now, not in 250 ms).
    mutating func step(journal: PauseJournal, connection: LibvirtConnection?, guests: [UUID: TrackedGuest]) -> Bool {
        let now = ContinuousClock.now
        var ended = false
        var left: [PendingResume] = []
        for var retry in pending {
            let name = retry.entry.name
            if let attempt = retry.attempt {
                guard let result = attempt.call.result else {
                    // Still inside libvirtd or QEMU: say so once it is late.
                    if now - attempt.started > attempt.timeout {
                        retry.failure = "resume did not return within \(attempt.timeout)"
                        guest(of: retry, in: guests)?.reclaimState.setResumeFailure(retry.failure)
                    }
                    left.append(retry)
                    continue
                }
                retry.attempt = nil
                switch result {
                case .success(let outcome):
                    logger.notice("\(name): \(outcome)")
                    guest(of: retry, in: guests)?.reclaimState.setResumeFailure(nil)
                    ended = true
                    continue
                case .failure(let error):
                    retry.failure = "resume failed: \(error)"
                }
                let delay = retry.backoff.next()
                logger.critical("\(name), paused by samepaged: \(retry.failure!); next attempt in \(delay)")
                retry.nextAttempt = now + delay
                guest(of: retry, in: guests)?.reclaimState.setResumeFailure(retry.failure)
                left.append(retry)
                continue
            }
            let needsLibvirt = if case .libvirt = retry.entry.target { true } else { false }
            if now < retry.nextAttempt || !(retry.outstanding?.isFinished ?? true) || (needsLibvirt && connection == nil) {
                left.append(retry)
                continue
            }
            retry.outstanding = nil
            let entry = retry.entry
            let qmpTimeout = Duration.milliseconds(configuration.qemuGuests.qmpTimeoutMs)
            retry.attempt = (
                BlockingCall { () throws(JournalReplayError) in
                    try endJournalledPause(entry, journal: journal, connection: connection, qmpTimeout: qmpTimeout)
                },
                now, needsLibvirt ? configuration.libvirtCallTimeout : qmpTimeout * 4)
            left.append(retry)
        }
        pending = left
        return ended
    }

    /// At stop: says of each pause still to end that the journal keeps it.
    func logLeft() {
        for retry in pending {
            logger.critical("\(retry.entry.name) is still paused by samepaged (\(retry.failure ?? "not resumed yet")); the journal keeps it for samepaged --resume-paused")
        }
    }

    private func guest(of retry: PendingResume, in guests: [UUID: TrackedGuest]) -> TrackedGuest? {
        UUID(uuidString: retry.entry.uuid).flatMap { guests[$0] }
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

import Foundation
import GuestMemory
import LinuxSystem
import Logging
import SamepageModel

/// What verifies and punches one batch of a guest's pages inside a pause.
protocol PausePunch: Sendable {
    /// Verifies and punches the batch while `shouldContinue` says so (asked before every run
    /// of pages).
    func punch(while shouldContinue: () -> Bool) -> PunchResult
}

/// What a pause punched.
struct PunchResult: Sendable {
    var outcome = ZeroPageReclaim()
    /// The page ranges punched, per region (the index into the guest's regions).
    var punched: [Int: [Range<Int>]] = [:]
    /// Why punching stopped before the batch was done, other than the deadline or an outside change.
    var failure: String?
}

/// How a pause's journal is written: ``PauseJournal``, or a test's.
protocol PauseJournaling: Sendable {
    func willPause(_ entry: PauseJournal.Entry) throws
    func didResume(uuid: String) throws
    /// Marks the entry of `uuid`, which could not be cleared after its pause ended, so that
    /// nothing replays it (``JournalBlocks``).
    func blockUncleared(uuid: String)
}

extension PauseJournaling {
    func blockUncleared(uuid: String) {}
}

/// The deadlines of a pause's calls.
struct PauseTimeouts: Sendable {
    /// Reading the state, connecting, resuming.
    var call: Duration
    /// The suspend: QEMU answers once block I/O is drained and flushed. A suspend not back by
    /// then may still land: the retries end it once its call has returned.
    var suspend: Duration
    /// How long a suspended event of our own is waited for when the order of events says
    /// nothing otherwise (libvirt delivers events on another thread).
    var ownSuspendEvent: Duration = .milliseconds(200)
}

/// The instants of a pause that happened, for its record and for learning its costs.
struct PauseTimes: Sendable {
    var wallStart: Double
    var start: ContinuousClock.Instant
    var suspended: ContinuousClock.Instant
    var punched: ContinuousClock.Instant
    var end: ContinuousClock.Instant
}

/// How a pause session ended.
struct PauseOutcome: Sendable {
    enum Verdict: Equatable, Sendable {
        /// Nothing was paused; the journal holds nothing. `busy`: the peer serves someone else.
        case notPaused(String, busy: Bool)
        /// The peer answers for another guest: never paused.
        case wrongPeer(String)
        /// The guest was paused, but not by us (or our pause was ended by someone else at
        /// once): nothing punched, left as it is, the journal cleared.
        case notOurs(String)
        /// Our pause: punched (or not, if a job or the state said no), then ended as ``ending`` says.
        case ours
    }

    /// How our pause ended.
    enum Ending: Equatable, Sendable {
        /// We resumed it (or found it no longer paused), and the journal is clear.
        case resumed
        /// Someone else changed it during our pause: not resumed by us, the journal is clear.
        case leftToOthers(String)
        /// Not ended yet: the journal holds the pause and the retries end it.
        case unresolved(String)
    }

    var verdict: Verdict = .notPaused("not started", busy: false)
    var ending: Ending?
    /// What the transport said of the guest before the pause.
    var before: PauseObservation?
    /// The pause as it happened, when our suspend paused the guest.
    var times: PauseTimes?
    var punch = PunchResult()
    var stoppedEarly = false
    /// A suspend or resume that has not returned yet: no retry until it has.
    var outstanding: (any PendingCall)?
    /// Whether our suspend went out (its events may still come).
    var suspendSent = false
}

/// One reclaim pause, ours alone and bounded, over any ``PauseTransport``:
///
/// 1. open the transport and check its peer; read the guest's state: it must be running, in
///    the QEMU run we mapped, with no host job;
/// 2. journal the pause (synced) before the suspend;
/// 3. suspend; a refusal clears the journal, a suspend that may still land leaves the pause
///    to the retries;
/// 4. is the pause ours? (``judge(events:after:before:eventsOrdered:)``);
/// 5. verify and punch until the batch is done, the deadline comes, or anything else happens
///    to the guest: then stop at once;
/// 6. resume, unless someone else already did or the guest is no longer in our pause; a
///    resume that fails leaves the journal entry, and the retries end the pause.
///
/// A value: everything it needs comes in, everything it did goes out as a ``PauseOutcome``,
/// so a test drives it through a scripted transport, one race at a time.
struct PauseSession: Sendable {
    var guest: GuestIdentity
    var transport: any PauseTransport
    var journal: any PauseJournaling
    var punch: any PausePunch
    var budget: PauseBudget
    /// The resume's expected cost, kept out of the punching window.
    var expectedResumeMicros: Double
    /// How long punching may go on after the suspend call returns, from what the guest saw of
    /// earlier pauses (``GuestSeenCost``); nil: the budget counts from the suspend call, less
    /// the expected resume.
    var punchWindowFromSuspend: Duration? = nil
    var timeouts: PauseTimeouts
    var logger: Logger
    /// The pausing thread's nice value from the journal write to the end of the session
    /// (`reclaim.pause_thread_nice`; nil: left as it is, the default). On a busy host this
    /// thread's punching and resume compete with every runnable thread for a CPU; measured on
    /// the busy-host benchmark, -10 did not shorten what the guest saw (BENCHMARKS.md), so it
    /// is an operator's choice, not a default.
    var threadNice: Int32? = nil

    /// What the events and the state after our suspend say of the pause.
    enum Ownership: Equatable {
        case ours
        /// Our suspend paused it while a host job ran: ours, but nothing is punched.
        case oursDuringJob(String)
        /// Not ours; `ourSuspendPaused`: our suspend did pause it and someone ended that at once.
        case notOurs(String, ourSuspendPaused: Bool)
        /// The state cannot be read: ours (the suspend succeeded) but nothing is punched.
        case unknown
    }

    /// Runs the pause. Blocks for the pause's length (bounded by its deadlines); for a pause
    /// thread, never the agent's.
    @available(*, noasync, message: "blocks for the length of a pause")
    func run() -> PauseOutcome {
        var outcome = PauseOutcome()
        defer { transport.close() }
        let name = guest.name
        do {
            try transport.open(deadline: .now + timeouts.call)
            try transport.markEvents()
            let before = try transport.observe(deadline: .now + timeouts.call)
            outcome.before = before
            guard before.state == .running else {
                outcome.verdict = .notPaused("it is \(before.state)", busy: false)
                return outcome
            }
            guard !before.jobRunning else {
                outcome.verdict = .notPaused("a host job (migration, snapshot, backup, dump) is running", busy: false)
                return outcome
            }
        } catch {
            switch error {
            case .busy(let why): outcome.verdict = .notPaused(why, busy: true)
            case .wrongPeer(let why): outcome.verdict = .wrongPeer(why)
            default: outcome.verdict = .notPaused(error.description, busy: false)
            }
            return outcome
        }
        // Put back when the session ends, whatever way (needs CAP_SYS_NICE: without it, the
        // thread runs as it was).
        var boost = threadNice.flatMap { try? ThreadNice(raisingCallingThreadTo: $0) }
        defer { boost?.restore() }
        do {
            try journal.willPause(PauseJournal.Entry(
                uuid: guest.uuid, name: name, since: Date().timeIntervalSince1970, target: transport.journalTarget))
        } catch {
            logger.error("guest \(name): cannot record the pause, not pausing: \(error)")
            outcome.verdict = .notPaused("the pause journal cannot be written: \(error)", busy: false)
            return outcome
        }

        let wallStart = Date().timeIntervalSince1970
        let start = ContinuousClock.now
        outcome.suspendSent = true
        do {
            try transport.suspend(deadline: start + timeouts.suspend)
        } catch {
            switch error {
            case .refused, .notApplicable, .busy:
                // Refused: nothing was paused by this call.
                logger.warning("guest \(name): suspend failed, nothing reclaimed: \(error)")
                outcome.verdict = .notPaused("suspend refused: \(error)", busy: false)
                clearJournal()
            default:
                // The suspend may have landed or may still land: the journal holds the pause and
                // the retries end it once the state can be read.
                logger.critical("guest \(name): suspend: \(error); resuming it once it can be told to be ours")
                outcome.verdict = .ours
                outcome.ending = .unresolved("suspend: \(error)")
                outcome.outstanding = transport.outstandingCall
            }
            return outcome
        }
        let suspended = ContinuousClock.now

        let ownership = ownershipAfterSuspend(before: outcome.before!)
        var times = PauseTimes(wallStart: wallStart, start: start, suspended: suspended, punched: suspended, end: suspended)
        switch ownership {
        case .notOurs(let why, let ourSuspendPaused):
            logger.warning("guest \(name): the pause is not ours (\(why)); nothing punched, left as it is")
            clearJournal()
            outcome.verdict = .notOurs(why)
            if ourSuspendPaused {
                times.punched = .now
                times.end = .now
                outcome.times = times
                outcome.stoppedEarly = true
            }
            return outcome
        case .unknown:
            logger.critical("guest \(name): its state after our suspend cannot be read; nothing punched, ending our pause once it can be")
            outcome.verdict = .ours
            outcome.ending = .unresolved("state unknown after our suspend")
            times.end = .now
            outcome.times = times
            return outcome
        case .oursDuringJob(let job):
            logger.warning("guest \(name): a host job (\(job)) began as we suspended it; nothing punched; ending our pause")
            outcome.verdict = .ours
            outcome.stoppedEarly = true
            times.punched = .now
            outcome.ending = endPause(afterOutsideChange: false)
        case .ours:
            outcome.verdict = .ours
            let deadline = punchWindowFromSuspend.map { suspended + $0 }
                ?? start + budget.punchWindow(expectedResumeMicros: expectedResumeMicros)
            var outside = false
            let transport = self.transport
            outcome.punch = punch.punch {
                if !outside { outside = transport.outsideChangeSinceSuspend() }
                return !outside && ContinuousClock.now < deadline
            }
            times.punched = .now
            outcome.stoppedEarly = outcome.punch.outcome.stoppedEarly || outside || ContinuousClock.now >= deadline
                || outcome.punch.failure != nil
            if let failure = outcome.punch.failure { logger.error("guest \(name): reclaim stopped: \(failure)") }
            outcome.ending = endPause(afterOutsideChange: outside)
        }
        times.end = .now
        outcome.times = times
        if case .unresolved? = outcome.ending { outcome.outstanding = transport.outstandingCall }
        return outcome
    }

    /// Reads the events since the mark and the state, and judges.
    private func ownershipAfterSuspend(before: PauseObservation) -> Ownership {
        var events: [PauseEvent]
        do { events = try transport.events(sinceMarkWaitingForOwnSuspend: nil) } catch { return .unknown }
        let after = try? transport.observe(deadline: .now + timeouts.call)
        // libvirt's events come late: where the verdict hangs on our own suspended event, it is
        // waited for (briefly) before judging.
        let ownSeen = events.contains { $0.kind == .suspended && !$0.beforeOurCall }
        let foreignBefore = events.contains { $0.kind == .suspended && $0.beforeOurCall }
        var jobPause = false
        if case .pausedForJob? = after?.state { jobPause = true }
        if !ownSeen, !transport.eventsAreOrderedWithReplies, foreignBefore || jobPause {
            if let more = try? transport.events(sinceMarkWaitingForOwnSuspend: .now + timeouts.ownSuspendEvent) { events = more }
        }
        return Self.judge(events: events, after: after, before: before, eventsOrdered: transport.eventsAreOrderedWithReplies)
    }

    /// Whether the pause after our suspend is ours, from the events since the mark (taken
    /// before the state was read) and the state right after the suspend (nil: unreadable).
    ///
    /// - A suspend seen before our call and none after it: someone else paused the guest and
    ///   our suspend changed nothing.
    /// - Where events are ordered with replies (QMP), a suspend of ours that paused the guest
    ///   shows as a suspended event after our call; without one, our call changed nothing.
    /// - The guest must then be paused by a client, in the same QEMU run. Paused for a job
    ///   whose start raced our suspend (libvirt records the job's reason), with our own
    ///   suspended event: ours, ended without punching.
    static func judge(events: [PauseEvent], after: PauseObservation?, before: PauseObservation, eventsOrdered: Bool) -> Ownership {
        let ownSeen = events.contains { $0.kind == .suspended && !$0.beforeOurCall }
        let foreignBefore = events.contains { $0.kind == .suspended && $0.beforeOurCall }
        if foreignBefore && !ownSeen { return .notOurs("someone else paused it just before our suspend", ourSuspendPaused: false) }
        guard let after else { return .unknown }
        // Resumed since our call: whatever holds the guest now (a pause of someone's) is theirs.
        if events.contains(where: { $0.kind == .resumed && !$0.beforeOurCall }) {
            return .notOurs("someone else resumed it right after our suspend", ourSuspendPaused: ownSeen)
        }
        if eventsOrdered && !ownSeen {
            switch after.state {
            case .running: return .notOurs("someone else resumed it right after our suspend", ourSuspendPaused: false)
            case .pausedByClient, .pausedForJob: return .notOurs("someone else paused it just before our suspend", ourSuspendPaused: false)
            case .other(let why): return .notOurs("QEMU stopped it itself (\(why))", ourSuspendPaused: false)
            }
        }
        if after.run != before.run { return .notOurs("its QEMU changed during the suspend", ourSuspendPaused: false) }
        switch after.state {
        case .running:
            return .notOurs("someone else resumed it right after our suspend", ourSuspendPaused: ownSeen)
        case .pausedByClient:
            return .ours
        case .pausedForJob(let job):
            return ownSeen ? .oursDuringJob(job) : .notOurs("it is paused for a job (\(job))", ourSuspendPaused: false)
        case .other(let why):
            return .notOurs("it is paused for another reason (\(why))", ourSuspendPaused: false)
        }
    }

    /// Ends our pause: after an outside change, only if no resume came since our suspend and
    /// the guest is still paused by a client in the same run.
    private func endPause(afterOutsideChange outside: Bool) -> PauseOutcome.Ending {
        let name = guest.name
        if outside {
            let events = (try? transport.events(sinceMarkWaitingForOwnSuspend: nil)) ?? []
            if events.contains(where: { $0.kind == .resumed && !$0.beforeOurCall }) {
                logger.warning("guest \(name): resumed by someone else during our pause; punching stopped, not resuming it")
                clearJournal()
                return .leftToOthers("resumed by someone else during our pause")
            }
            guard let now = try? transport.observe(deadline: .now + timeouts.call) else {
                logger.warning("guest \(name): something happened to it during our pause and its state cannot be read; punching stopped, ending our pause once it can be")
                return .unresolved("state unknown after an event during our pause")
            }
            guard now.state == .pausedByClient else {
                logger.warning("guest \(name): its state changed during our pause (\(now.state)); punching stopped, not resuming it")
                clearJournal()
                return .leftToOthers("its state changed during our pause (\(now.state))")
            }
            let names = events.filter { !$0.beforeOurCall && $0.kind != .suspended }.map { "\($0.kind)" }
            logger.warning("guest \(name): \(names.isEmpty ? "an event" : names.joined(separator: ", ")) during our pause; punching stopped; ending our pause")
        }
        do {
            try transport.resume(deadline: .now + timeouts.call)
            clearJournal()
            return .resumed
        } catch {
            if case .notApplicable = error {
                // Not paused any more (resumed by someone, or gone): nothing left to undo.
                clearJournal()
                return .leftToOthers("not paused any more: \(error)")
            }
            logger.critical("guest \(name): resume: \(error); retrying with backoff")
            return .unresolved("resume: \(error)")
        }
    }

    /// Clears the guest's journal entry; a journal that cannot be written is said loudly (its
    /// stale entry would be replayed, and is checked then).
    private func clearJournal() {
        do { try journal.didResume(uuid: guest.uuid) } catch {
            journal.blockUncleared(uuid: guest.uuid)
            logger.critical("guest \(guest.name): cannot clear its pause from the journal: \(error); the entry is blocked: no replay resumes it and the guest is not paused again until it is removed by hand")
        }
    }
}

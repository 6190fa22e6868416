import Foundation
import LinuxSystem
import Logging
import SamepageModel
import Synchronization
import Testing

@testable import SamepageAgent

// The pause protocol driven through a scripted transport, one race at a time. Each row of the
// table says what the transport reports and what must come of it: whether pages are punched,
// whether we resume the guest, and what the journal is left holding. The expectations are the
// safety rules of DESIGN.md ("a pause is ours alone, bounded, and always ended; never end a
// pause we did not make"), written out by hand, never taken from the code under test.

/// A transport whose answers are a script; it records the calls made of it.
final class ScriptedTransport: PauseTransport, @unchecked Sendable {
    var openError: PauseTransportError?
    /// Answers of `observe`, in order; the last one repeats. nil: the state cannot be read.
    var observations: [PauseObservation?] = [PauseObservation(state: .running, run: "run-1")]
    var suspendError: PauseTransportError?
    /// Errors of successive resumes; nil: it succeeds.
    var resumeErrors: [PauseTransportError?] = []
    /// Events since the mark, as `events(since:)` reports them after our suspend.
    var events: [PauseEvent] = [PauseEvent(kind: .suspended, beforeOurCall: false)]
    /// Events that come only when waited for (libvirt's late delivery).
    var lateEvents: [PauseEvent] = []
    /// `outsideChangeSinceSuspend` says yes from this call on (nil: never); `outsideEvents`
    /// join the events then.
    var outsideFromCall: Int?
    var outsideEvents: [PauseEvent] = []
    var ordered = false
    var pending: (any PendingCall)?

    private(set) var calls: [String] = []
    private var observeCount = 0
    private var outsideCalls = 0
    private var resumeCount = 0
    private var outsideHappened = false

    var journalTarget: PauseJournal.Target { .libvirt(domainID: 1) }
    var eventsAreOrderedWithReplies: Bool { ordered }
    var outstandingCall: (any PendingCall)? { pending }

    func open(deadline: ContinuousClock.Instant) throws(PauseTransportError) {
        calls.append("open")
        if let openError { throw openError }
    }
    func markEvents() throws(PauseTransportError) { calls.append("mark") }
    func observe(deadline: ContinuousClock.Instant) throws(PauseTransportError) -> PauseObservation {
        calls.append("observe")
        let answer = observations[min(observeCount, observations.count - 1)]
        observeCount += 1
        guard let answer else { throw .timedOut("reading its state did not return") }
        return answer
    }
    func suspend(deadline: ContinuousClock.Instant) throws(PauseTransportError) {
        calls.append("suspend")
        if let suspendError { throw suspendError }
    }
    func resume(deadline: ContinuousClock.Instant) throws(PauseTransportError) {
        calls.append("resume")
        defer { resumeCount += 1 }
        if resumeCount < resumeErrors.count, let error = resumeErrors[resumeCount] { throw error }
    }
    func events(sinceMarkWaitingForOwnSuspend ownSuspendBy: ContinuousClock.Instant?) throws(PauseTransportError) -> [PauseEvent] {
        var all = events + (outsideHappened ? outsideEvents : [])
        if ownSuspendBy != nil { all += lateEvents }
        return all
    }
    func outsideChangeSinceSuspend() -> Bool {
        outsideCalls += 1
        if let outsideFromCall, outsideCalls >= outsideFromCall { outsideHappened = true }
        return outsideHappened
    }
    func close() { calls.append("close") }
    func eventCountsAfterPause(ended: Bool) -> (suspended: Int, resumed: Int)? { nil }

    var resumed: Bool { calls.contains("resume") }
    var suspended: Bool { calls.contains("suspend") }
}

/// A journal in memory that can be made to fail.
final class MemoryJournal: PauseJournaling, @unchecked Sendable {
    private let state = Mutex<(entries: [String], failWrite: Bool, failClear: Bool)>(([], false, false))
    init(failWrite: Bool = false, failClear: Bool = false) { state.withLock { $0.failWrite = failWrite; $0.failClear = failClear } }
    var entries: [String] { state.withLock { $0.entries } }
    func willPause(_ entry: PauseJournal.Entry) throws {
        try state.withLock {
            if $0.failWrite { throw JournalError(path: "memory", problem: "No space left on device") }
            $0.entries.append(entry.uuid)
        }
    }
    func didResume(uuid: String) throws {
        try state.withLock {
            if $0.failClear { throw JournalError(path: "memory", problem: "No space left on device") }
            $0.entries.removeAll { $0 == uuid }
        }
    }
}

/// A batch of `runs` runs of pages: each run asks `shouldContinue` first and counts as punched
/// when it may go on. `runTime` is how long each run takes.
final class ScriptedPunch: PausePunch {
    let runs: Int
    let runTime: Duration
    let punchedRuns = Mutex(0)
    init(runs: Int = 4, runTime: Duration = .zero) {
        self.runs = runs
        self.runTime = runTime
    }
    func punch(while shouldContinue: () -> Bool) -> PunchResult {
        var result = PunchResult()
        for run in 0..<runs {
            guard shouldContinue() else {
                result.outcome.stoppedEarly = true
                break
            }
            if runTime > .zero { Thread.sleep(forTimeInterval: runTime.inSeconds) }
            result.outcome.pagesPunched += 1
            result.punched[0, default: []].append(run..<(run + 1))
            punchedRuns.withLock { $0 += 1 }
        }
        return result
    }
}

private let guestIdentity = GuestIdentity(name: "db1", uuid: "6f1c2b9e-0000-4000-8000-000000000001")

private func session(
    _ transport: ScriptedTransport, journal: MemoryJournal = MemoryJournal(), punch: ScriptedPunch = ScriptedPunch(),
    maxPauseMs: Int = 1000
) -> PauseSession {
    PauseSession(
        guest: guestIdentity, transport: transport, journal: journal, punch: punch, budget: PauseBudget(maxPauseMs: maxPauseMs),
        expectedResumeMicros: 0, timeouts: PauseTimeouts(call: .seconds(1), suspend: .seconds(1), ownSuspendEvent: .milliseconds(20)),
        logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
}

private let paused = PauseObservation(state: .pausedByClient, run: "run-1")
private let running = PauseObservation(state: .running, run: "run-1")
private let suspendedBefore = PauseEvent(kind: .suspended, beforeOurCall: true)
private let ownSuspend = PauseEvent(kind: .suspended, beforeOurCall: false)
private let outsideResume = PauseEvent(kind: .resumed, beforeOurCall: false)

@Suite("Pause protocol: the race table")
struct PauseSessionTests {
    @Test("A quiet pause: every page punched, the guest resumed, the journal clear")
    func quietPause() {
        let transport = ScriptedTransport()
        transport.observations = [running, paused]
        let journal = MemoryJournal()
        let punch = ScriptedPunch(runs: 4)
        let outcome = session(transport, journal: journal, punch: punch).run()
        #expect(outcome.verdict == .ours)
        #expect(outcome.ending == .resumed)
        #expect(punch.punchedRuns.withLock { $0 } == 4)
        #expect(outcome.punch.outcome.pagesPunched == 4)
        #expect(journal.entries.isEmpty)
        #expect(transport.calls == ["open", "mark", "observe", "suspend", "observe", "resume", "close"])
        #expect(outcome.times != nil && !outcome.stoppedEarly)
    }

    @Test(
        "reclaim.pause_thread_nice -10: the pausing thread runs at it from the journal write to the end, and at its own nice after",
        .enabled(if: getuid() == 0, "lowering a nice value needs CAP_SYS_NICE"))
    func pausingThreadPriority() throws {
        final class NiceRecordingPunch: PausePunch {
            let seen = Mutex<Int32?>(nil)
            func punch(while shouldContinue: () -> Bool) -> PunchResult {
                seen.withLock { $0 = try? ThreadNice.nice(of: ThreadNice.callingThread) }
                return PunchResult()
            }
        }
        let before = try ThreadNice.nice(of: ThreadNice.callingThread)
        let transport = ScriptedTransport()
        transport.observations = [running, paused]
        let punch = NiceRecordingPunch()
        var pause = session(transport)
        pause.punch = punch
        pause.threadNice = -10
        #expect(pause.run().ending == .resumed)
        #expect(punch.seen.withLock { $0 } == -10)
        #expect(try ThreadNice.nice(of: ThreadNice.callingThread) == before)

        // Turned off: the thread keeps its nice value throughout.
        let untouched = ScriptedTransport()
        untouched.observations = [running, paused]
        pause = session(untouched)
        pause.punch = punch
        pause.threadNice = nil
        #expect(pause.run().ending == .resumed)
        #expect(punch.seen.withLock { $0 } == before)
    }

    @Test("Someone else's pause just before our suspend (libvirt): not ours, nothing punched, not resumed")
    func foreignPauseBeforeOurSuspend() {
        let transport = ScriptedTransport()
        transport.observations = [running, paused]
        transport.events = [suspendedBefore]  // and our suspend, on a paused guest, made no event
        let journal = MemoryJournal()
        let punch = ScriptedPunch()
        let outcome = session(transport, journal: journal, punch: punch).run()
        #expect(outcome.verdict == .notOurs("someone else paused it just before our suspend"))
        #expect(!transport.resumed)
        #expect(punch.punchedRuns.withLock { $0 } == 0)
        #expect(journal.entries.isEmpty)
        #expect(outcome.times == nil)
    }

    @Test("A pause before our suspend whose own event comes late (libvirt): ours after all")
    func foreignLookingPauseThenOwnLateEvent() {
        let transport = ScriptedTransport()
        transport.observations = [running, paused]
        transport.events = [suspendedBefore]
        transport.lateEvents = [ownSuspend]
        let outcome = session(transport).run()
        #expect(outcome.verdict == .ours)
        #expect(transport.resumed)
    }

    @Test("Over QMP, no STOP after our stop: our stop changed nothing, left alone")
    func qmpMissingStop() {
        let transport = ScriptedTransport()
        transport.ordered = true
        transport.observations = [running, paused]
        transport.events = []
        let outcome = session(transport).run()
        #expect(outcome.verdict == .notOurs("someone else paused it just before our suspend"))
        #expect(!transport.resumed)
    }

    @Test("Resumed by someone else between our suspend and our check: a pause of ours cut short, not resumed by us")
    func resumedBeforeOurCheck() {
        let transport = ScriptedTransport()
        transport.observations = [running, running]
        let journal = MemoryJournal()
        let outcome = session(transport, journal: journal).run()
        #expect(outcome.verdict == .notOurs("someone else resumed it right after our suspend"))
        #expect(!transport.resumed)
        #expect(journal.entries.isEmpty)
        #expect(outcome.times != nil && outcome.stoppedEarly)  // recorded: the guest was stopped
    }

    @Test("Resumed and paused again by someone else before our check: their pause, left alone")
    func resumedAndPausedAgainBeforeOurCheck() {
        let transport = ScriptedTransport()
        transport.observations = [running, paused]
        transport.events = [ownSuspend, outsideResume, PauseEvent(kind: .suspended, beforeOurCall: false)]
        let outcome = session(transport).run()
        #expect(outcome.verdict == .notOurs("someone else resumed it right after our suspend"))
        #expect(!transport.resumed)
    }

    @Test("An outside resume during the batch: punching stops at once, we do not resume, journal clear")
    func outsideResumeDuringBatch() {
        let transport = ScriptedTransport()
        transport.observations = [running, paused, running]
        transport.outsideFromCall = 2
        transport.outsideEvents = [outsideResume]
        let journal = MemoryJournal()
        let punch = ScriptedPunch(runs: 10)
        let outcome = session(transport, journal: journal, punch: punch).run()
        #expect(punch.punchedRuns.withLock { $0 } == 1)
        #expect(outcome.ending == .leftToOthers("resumed by someone else during our pause"))
        #expect(!transport.resumed)
        #expect(journal.entries.isEmpty)
        #expect(outcome.stoppedEarly)
    }

    @Test("Another event during the batch, guest still in our pause: punching stops, our pause is ended")
    func otherEventDuringBatch() {
        let transport = ScriptedTransport()
        transport.observations = [running, paused, paused]
        transport.outsideFromCall = 3
        transport.outsideEvents = [PauseEvent(kind: .other("DEVICE_DELETED"), beforeOurCall: false)]
        let punch = ScriptedPunch(runs: 10)
        let outcome = session(transport, punch: punch).run()
        #expect(punch.punchedRuns.withLock { $0 } == 2)
        #expect(outcome.ending == .resumed)
        #expect(transport.resumed)
    }

    @Test("An event during the batch and the guest no longer paused by a client: not ours to resume")
    func stateChangedDuringBatch() {
        let transport = ScriptedTransport()
        transport.observations = [running, paused, PauseObservation(state: .other("QEMU io-error"), run: "run-1")]
        transport.outsideFromCall = 1
        transport.outsideEvents = [PauseEvent(kind: .other("BLOCK_IO_ERROR"), beforeOurCall: false)]
        let journal = MemoryJournal()
        let outcome = session(transport, journal: journal).run()
        #expect(!transport.resumed)
        #expect(journal.entries.isEmpty)
        if case .leftToOthers? = outcome.ending {} else { Issue.record("ending \(String(describing: outcome.ending))") }
    }

    @Test("An event during the batch and the state unreadable: the journal keeps the pause for the retries")
    func stateUnreadableAfterEvent() {
        let transport = ScriptedTransport()
        transport.observations = [running, paused, nil]
        transport.outsideFromCall = 1
        transport.outsideEvents = [PauseEvent(kind: .other("RESET"), beforeOurCall: false)]
        let journal = MemoryJournal()
        let outcome = session(transport, journal: journal).run()
        #expect(outcome.ending == .unresolved("state unknown after an event during our pause"))
        #expect(!transport.resumed)
        #expect(journal.entries == [guestIdentity.uuid])
    }

    @Test("A suspend that times out and may land later: nothing punched, the journal holds it, the call is handed on")
    func suspendTimesOut() {
        final class StillRunning: PendingCall, @unchecked Sendable { var isFinished: Bool { false } }
        let transport = ScriptedTransport()
        transport.suspendError = .timedOut("suspend did not return within 10 s")
        transport.pending = StillRunning()
        let journal = MemoryJournal()
        let punch = ScriptedPunch()
        let outcome = session(transport, journal: journal, punch: punch).run()
        #expect(outcome.ending == .unresolved("suspend: suspend did not return within 10 s"))
        #expect(outcome.outstanding != nil)
        #expect(punch.punchedRuns.withLock { $0 } == 0)
        #expect(!transport.resumed)
        #expect(journal.entries == [guestIdentity.uuid])
    }

    @Test("A suspend refused: nothing paused, the journal clear")
    func suspendRefused() {
        let transport = ScriptedTransport()
        transport.suspendError = .refused("Requested operation is not valid")
        let journal = MemoryJournal()
        let outcome = session(transport, journal: journal).run()
        #expect(outcome.verdict == .notPaused("suspend refused: Requested operation is not valid", busy: false))
        #expect(journal.entries.isEmpty)
    }

    @Test("The state unreadable right after our suspend: nothing punched, ended through the retries")
    func stateUnreadableAfterSuspend() {
        let transport = ScriptedTransport()
        transport.observations = [running, nil]
        let journal = MemoryJournal()
        let punch = ScriptedPunch()
        let outcome = session(transport, journal: journal, punch: punch).run()
        #expect(outcome.ending == .unresolved("state unknown after our suspend"))
        #expect(punch.punchedRuns.withLock { $0 } == 0)
        #expect(journal.entries == [guestIdentity.uuid])
    }

    @Test("A resume that fails: the journal keeps the pause; one that finds the guest running: clear")
    func resumeFails() {
        let failing = ScriptedTransport()
        failing.observations = [running, paused]
        failing.resumeErrors = [.lost("resume failed on the connection")]
        let journal = MemoryJournal()
        let outcome = session(failing, journal: journal).run()
        #expect(outcome.ending == .unresolved("resume: resume failed on the connection"))
        #expect(journal.entries == [guestIdentity.uuid])

        let notPaused = ScriptedTransport()
        notPaused.observations = [running, paused]
        notPaused.resumeErrors = [.notApplicable("domain is not paused")]
        let clear = MemoryJournal()
        let second = session(notPaused, journal: clear).run()
        #expect(second.ending == .leftToOthers("not paused any more: domain is not paused"))
        #expect(clear.entries.isEmpty)
    }

    @Test("The journal cannot be written (disk full): the guest is never suspended")
    func journalWriteFails() {
        let transport = ScriptedTransport()
        let outcome = session(transport, journal: MemoryJournal(failWrite: true)).run()
        #expect(!transport.suspended)
        if case .notPaused = outcome.verdict {} else { Issue.record("verdict \(outcome.verdict)") }
    }

    @Test("A host job before the pause: never suspended")
    func jobBeforePause() {
        let transport = ScriptedTransport()
        transport.observations = [PauseObservation(state: .running, run: "run-1", jobRunning: true)]
        let journal = MemoryJournal()
        let outcome = session(transport, journal: journal).run()
        #expect(!transport.suspended)
        #expect(journal.entries.isEmpty)
        #expect(outcome.verdict == .notPaused("a host job (migration, snapshot, backup, dump) is running", busy: false))
    }

    @Test("Our suspend lands as a job starts (libvirt records the job's reason): ours, nothing punched, ended")
    func suspendLandsInJob() {
        let transport = ScriptedTransport()
        transport.observations = [running, PauseObservation(state: .pausedForJob("snapshot"), run: "run-1")]
        let punch = ScriptedPunch()
        let journal = MemoryJournal()
        let outcome = session(transport, journal: journal, punch: punch).run()
        #expect(outcome.verdict == .ours)
        #expect(outcome.ending == .resumed)
        #expect(punch.punchedRuns.withLock { $0 } == 0)
        #expect(journal.entries.isEmpty)
    }

    @Test("Paused for a job with no suspend event of ours: the job's pause, left alone")
    func jobPauseNotOurs() {
        let transport = ScriptedTransport()
        transport.observations = [running, PauseObservation(state: .pausedForJob("migration"), run: "run-1")]
        transport.events = []
        let outcome = session(transport).run()
        #expect(outcome.verdict == .notOurs("it is paused for a job (migration)"))
        #expect(!transport.resumed)
    }

    @Test("A new QEMU run during the suspend, or a pause for another reason: not ours")
    func notTheSameRun() {
        let restarted = ScriptedTransport()
        restarted.observations = [running, PauseObservation(state: .pausedByClient, run: "run-2")]
        #expect(session(restarted).run().verdict == .notOurs("its QEMU changed during the suspend"))
        #expect(!restarted.resumed)
        let ioError = ScriptedTransport()
        ioError.observations = [running, PauseObservation(state: .other("paused (I/O error)"), run: "run-1")]
        #expect(session(ioError).run().verdict == .notOurs("it is paused for another reason (paused (I/O error))"))
        #expect(!ioError.resumed)
    }

    @Test("A guest not running before the pause, a busy or wrong peer: never suspended, nothing journalled")
    func notStarted() {
        let pausedAlready = ScriptedTransport()
        pausedAlready.observations = [paused]
        #expect(session(pausedAlready).run().verdict == .notPaused("it is paused by a client", busy: false))
        let busy = ScriptedTransport()
        busy.openError = .busy("no greeting within 0.2 seconds")
        #expect(session(busy).run().verdict == .notPaused("no greeting within 0.2 seconds", busy: true))
        let wrong = ScriptedTransport()
        wrong.openError = .wrongPeer("answers for db2")
        let journal = MemoryJournal()
        #expect(session(wrong, journal: journal).run().verdict == .wrongPeer("answers for db2"))
        for transport in [pausedAlready, busy, wrong] { #expect(!transport.suspended) }
        #expect(journal.entries.isEmpty)
    }

    @Test("The deadline ends punching: a slow batch stops early and the guest is resumed")
    func deadline() {
        let transport = ScriptedTransport()
        transport.observations = [running, paused]
        let punch = ScriptedPunch(runs: 100, runTime: .milliseconds(5))
        let outcome = session(transport, punch: punch, maxPauseMs: 20).run()
        let runs = punch.punchedRuns.withLock { $0 }
        #expect(runs >= 1 && runs < 10, "\(runs) runs of 5 ms in a 20 ms budget")
        #expect(outcome.stoppedEarly)
        #expect(outcome.ending == .resumed)
    }

    @Test("The journal cannot be cleared after a resume: the guest runs, and it is said")
    func journalClearFails() {
        let transport = ScriptedTransport()
        transport.observations = [running, paused]
        let journal = MemoryJournal(failClear: true)
        let outcome = session(transport, journal: journal).run()
        #expect(transport.resumed)
        #expect(outcome.ending == .resumed)
        #expect(journal.entries == [guestIdentity.uuid])  // kept; a replay finds the guest running
    }
}

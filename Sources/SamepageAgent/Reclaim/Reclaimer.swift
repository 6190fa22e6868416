import Foundation
import GuestMemory
import Libvirt
import Logging
import SamepageCore
import SamepageModel

/// Zero-page reclaim: confirmed zero pages are gathered per guest and given back to the host
/// in short pauses of that guest (``PauseSession``: suspend, verify each page is still zero,
/// punch holes, resume), within the guest's pause budget, each on a pause thread of its own.
///
/// It owns what reclaim needs across guests: the pause journal, the pauses under way (one
/// per guest at most), the pauses still to end (``ResumeRetries``), the host's CPU load
/// (``HostCPULoad``), `run unmerge` (``Repopulation``) and the totals of guests that are gone.
/// What is one guest's is its ``ReclaimState``. The guest table and libvirt's connection are
/// the worker's, passed to each call; a call returns whether the worker should publish now.
final class Reclaimer {
    let agent: Agent
    var configuration: AgentConfiguration { agent.configuration }
    var logger: Logger { agent.logger }
    /// Where each pause is written before it starts; nil disables reclaim altogether.
    let journal: PauseJournal?
    /// This process's hold on the journal: no other samepaged replays it meanwhile.
    let journalLock: JournalLock?
    let mappers: GuestMappers
    let queries: QEMUGuestQueries
    let audit: PauseAudit
    /// The pauses of ours still to end (from a previous run, or a failed resume).
    private(set) var retries: ResumeRetries
    /// The pauses under way on pause threads, one per guest at most.
    private(set) var pausesInFlight: [UUID: PauseInFlight] = [:]
    /// Reclaim totals of guests that are gone.
    private(set) var reclaimedByGoneGuests = ReclaimStatus()
    private(set) var repopulation: Repopulation
    /// What was punched, kept across remaps and restarts (beside the journal).
    let punched: PunchRecords
    var load = HostCPULoad()

    /// Reads the pause journal: the pauses an earlier samepaged left are resumed first.
    init(agent: Agent, mappers: GuestMappers, queries: QEMUGuestQueries) throws {
        self.agent = agent
        self.mappers = mappers
        self.queries = queries
        audit = PauseAudit(agent: agent)
        repopulation = Repopulation(logger: agent.logger)
        journal = agent.configuration.pauseJournal.map(PauseJournal.init(path:))
        // Before the journal is read: one journal, one owner.
        journalLock = try agent.configuration.pauseJournal.map { try JournalLock.acquire(journal: $0) }
        punched = PunchRecords(file: agent.configuration.pauseJournal.map(PunchLedgerFile.init(besideJournal:)), logger: agent.logger)
        retries = ResumeRetries(journalled: try journal?.entries() ?? [], configuration: agent.configuration, logger: agent.logger)
        if !retries.isEmpty {
            agent.logger.warning("\(retries.count) guest(s) paused by an earlier samepaged: resuming them (over QMP at once, through libvirt once it is reachable)")
            if retries.needsLibvirt, agent.configuration.uri.isEmpty {
                agent.logger.critical("the pause journal holds pauses made through libvirt, and libvirt is off (libvirt.uri = \"\"): set libvirt.uri to end them, or resume them with virsh")
            }
        }
    }

    /// Whether a pause of ours of the guest is under way (on a pause thread).
    func holdsPause(of uuid: UUID) -> Bool { pausesInFlight[uuid] != nil }

    /// Why the guest's zero pages may not be reclaimed now; nil when they may.
    func ineligibility(_ guest: TrackedGuest, asIfReclaiming: Bool = false) -> String? {
        ReclaimEligibility.refusal(
            of: guest, reclaimEnabled: journal != nil, unendedPause: retries.failure(ofGuest: guest.identity.uuid),
            asIfReclaiming: asIfReclaiming)
    }

    /// A page the engine found zero on two visits in a row, in the guest's region `region`.
    func zeroPageConfirmed(_ guest: TrackedGuest, region: Int, page: Int) {
        guard region < guest.regions.count, !guest.hasPrivateRAM, guest.policy.mode.reclaims else { return }
        guest.reclaimState.addPending(page: page, region: region, at: ContinuousClock.now)
    }

    /// A page seen zero for the first time: a candidate for a second look of our own
    /// (``ZeroCandidates``), so that it comes back before the engine's next full scan.
    func zeroPageSeen(_ guest: TrackedGuest, region: Int, page: Int) {
        // Cheap checks only: this runs for every page a scan first sees zero (millions on a large
        // guest's first scan); eligibility is asked when a pause is due.
        guard region < guest.regions.count, !guest.hasPrivateRAM, guest.policy.mode.reclaims else { return }
        guest.reclaimState.candidates.add(page: page, region: region, at: ContinuousClock.now)
    }

    /// Reads the host's CPU load, while some guest has pages waiting for a pause.
    func readLoad(_ guests: [UUID: TrackedGuest]) {
        let needed = guests.values.contains { $0.reclaimState.pendingPages > 0 }
        if let warning = load.read(needed: needed, at: ContinuousClock.now) { logger.warning("\(warning)") }
    }

    /// Pauses at most one guest per call, the one whose pending pages are due.
    func reclaimIfDue(_ guests: [UUID: TrackedGuest], engine: Engine, connection: LibvirtConnection?) {
        guard journal != nil, engine.run == .merge, !repopulation.active else { return }
        // The host-wide cap: pages that may still be held back, over all backends (those of
        // earlier mappings and runs of samepaged too).
        var capRoom = Int.max
        if configuration.reclaimMaxBytes > 0 {
            punched.record(guests.values)
            let held = punched.heldPages * pageSize
            capRoom = (configuration.reclaimMaxBytes - held) / pageSize
            guard capRoom > 0 else { return }
        }
        let now = ContinuousClock.now
        for guest in guests.values {
            // One pause of a guest at a time; others go on while it runs.
            guard pausesInFlight[guest.uuid] == nil else { continue }
            guest.reclaimState.clearDeferralIfIdle()
            guard guest.reclaimState.isDue(at: now, batchMinimum: configuration.reclaimBatchMinimum, delay: configuration.reclaimDelay)
            else { continue }
            guard ownEventsDelivered(guest) else { continue }
            // Not now: the pages wait (bounded) and are verified again inside the pause.
            guard ineligibility(guest) == nil else {
                guest.reclaimState.clearDeferral()
                continue
            }
            // The duty cycle: paused milliseconds in the last minute, plus this pause's budget.
            guard guest.reclaimState.dutyCycleAllows(
                maxPauseMs: guest.policy.maxPauseMs, maxPauseMsPerMinute: guest.policy.maxPauseMsPerMinute, at: now)
            else { continue }
            // A busy host, or a guest whose suspend and resume alone nearly fill the budget:
            // wait, and say so. The first pause after a wait for cost is a probe.
            let probe = guest.reclaimState.status.deferred?.reason == .pauseCost
            guard pauseFitsBudget(guest, at: now) else { continue }
            // Size the batch from the measured cost so the pause stays within max_pause_ms.
            guest.reclaimState.probing = probe || guest.reclaimState.pausesMeasured == 0
            // A probe measures afresh what the guest sees of a pause, with real work done.
            if probe { guest.reclaimState.guestSeen.reset() }
            let size = guest.reclaimState.probing ? ReclaimState.probePages : guest.reclaimState.batchSize(maxPauseMs: guest.policy.maxPauseMs)
            reclaim(guest, limit: min(capRoom, size), guests: guests, connection: connection)
            return
        }
    }

    /// Decides whether the due reclaim of `guest` waits, and keeps its status and log in step:
    /// a wait is counted at its start and at each change of its reason, and logged when it
    /// starts and when it ends (not at every loop, nor when its reason flaps). Returns true
    /// when the pause may go ahead.
    ///
    /// A saturated host (no idle CPU over the last second) waits; a pause that what the guest
    /// saw of the last ones says cannot punch anything within the budget waits (probed again
    /// now and then); CPU pressure over `reclaim.max_cpu_pressure` only spaces pauses out.
    private func pauseFitsBudget(_ guest: TrackedGuest, at now: ContinuousClock.Instant) -> Bool {
        let limit = configuration.reclaimMaxCPUPressure
        guard load.isMeasured(pressureLimit: limit) else { return false }  // not known yet: wait
        if let deferral = load.busyDeferral(pressureLimit: limit) ?? guest.reclaimState.deferral(maxPauseMs: guest.policy.maxPauseMs, at: now) {
            let starts = guest.reclaimState.status.deferred == nil
            _ = guest.reclaimState.recordDeferral(deferral)
            if starts { logger.notice("guest \(guest.identity.name): reclaim waits: \(deferral.detail)") }
            return false
        }
        // A busy monitor is known to be free only once a pause connects (finishPause).
        if guest.reclaimState.status.deferred?.reason != .monitorBusy, let previous = guest.reclaimState.clearDeferral() {
            logger.notice("guest \(guest.identity.name): reclaim goes on (was waiting: \(previous.detail))")
        }
        guard let spacing = ReclaimState.pressureSpacing(pressure: load.pressure, limit: limit),
            let last = guest.reclaimState.lastPauseEnd
        else { return true }
        return now - last >= spacing
    }

    /// Whether libvirt has delivered the lifecycle events of our last pause of the guest (or
    /// we waited 5 s for them): until then a pause waits, so an event of ours that arrives
    /// late is never taken for someone else's pause or resume.
    private func ownEventsDelivered(_ guest: TrackedGuest) -> Bool {
        guard let expected = guest.reclaimState.ownEvents else { return true }
        let events = agent.stateEvents(of: guest.uuid)
        if (events.suspendedCount >= expected.suspended && events.resumedCount >= expected.resumed)
            || ContinuousClock.now >= expected.until {
            guest.reclaimState.ownEvents = nil
            return true
        }
        return false
    }

    /// Starts one reclaim pause of `guest` on a pause thread (``PauseSession``): the agent's
    /// thread goes on scanning while it runs, and ``collectPauses(_:)`` applies its outcome.
    private func reclaim(_ guest: TrackedGuest, limit: Int, guests: [UUID: TrackedGuest], connection: LibvirtConnection?) {
        guard let journal, let (transport, timeouts) = PauseTransportChoice.transport(for: guest, connection: connection, agent: agent)
        else { return }
        let batch = guest.reclaimState.takeBatch(limit: limit, regions: guest.regions, at: ContinuousClock.now)
        guard !batch.isEmpty else {
            // Nothing whole to punch (partial huge pages): no pause until more pages come.
            guest.reclaimState.batchMayFreeSomething = false
            return
        }
        guard readyToPause(guest, batch: batch, guests: guests) else { return }
        audit.complete(guest, force: true)  // the previous pause's events were awaited
        let session = PauseSession(
            guest: guest.identity, transport: transport, journal: journal,
            punch: BatchPunch(regions: batch.map { ($0.region, guest.regions[$0.region], $0.pages) }),
            budget: PauseBudget(maxPauseMs: guest.policy.maxPauseMs), expectedResumeMicros: guest.reclaimState.resumeMicros,
            punchWindowFromSuspend: punchWindow(guest), timeouts: timeouts, logger: logger,
            threadNice: configuration.pauseThreadNice)
        pausesInFlight[guest.uuid] = PauseInFlight(
            identity: guest.identity, tracked: ObjectIdentifier(guest), transport: transport, batch: batch,
            call: BlockingCall { () throws(Never) in session.run() })
    }

    /// How long the next pause may punch after its suspend returns, from what the guest saw of
    /// the last ones (``GuestSeenCost``); at least ``GuestSeenCost/minimumWindow`` for a probe,
    /// which must do real work to measure anything. nil before QEMU's events told anything:
    /// the budget then counts from the suspend call.
    private func punchWindow(_ guest: TrackedGuest) -> Duration? {
        let window = guest.reclaimState.guestSeen.punchWindow(maxPauseMs: guest.policy.maxPauseMs)
        guard guest.reclaimState.probing else { return window }
        return max(window ?? .zero, GuestSeenCost.minimumWindow)
    }

    /// What is checked before any pause, whoever pauses: no device that DMAs into guest RAM,
    /// no other process mapping it (the index at most a second old), no Proxmox lock, and each
    /// backend still the file that was opened.
    private func readyToPause(_ guest: TrackedGuest, batch: [(region: Int, pages: [Int])], guests: [UUID: TrackedGuest]) -> Bool {
        let name = guest.identity.name
        guard GuestMappers.checkDMADescriptors(guest) else { return false }
        // A process that mapped the backend since the last look is found before the pause:
        // the index is at most a second old when a pause starts.
        if mappers.refresh(guests.values.filter(\.mapped), ifOlderThan: .seconds(1)) {
            guard guest.facts.otherMappers.isEmpty else {
                logger.warning("guest \(name): \(ineligibility(guest) ?? "another process maps its RAM"); not pausing")
                return false
            }
        }
        queries.refreshProxmoxLock(guest)
        if let lock = guest.facts.proxmoxLock {
            logger.info("guest \(name): Proxmox VE lock \(lock); not pausing")
            return false
        }
        for (region, _) in batch {
            do { try guest.regions[region].ensureStillSameBackend() } catch {
                logger.warning("guest \(name): \(error); not pausing")
                return false
            }
        }
        return true
    }

    /// Applies the outcomes of the pauses that have ended; returns whether a pause was left
    /// to end (publish now).
    func collectPauses(_ guests: [UUID: TrackedGuest]) -> Bool {
        var publish = false
        for (uuid, inFlight) in pausesInFlight {
            guard case .success(let outcome)? = inFlight.call.result else { continue }
            pausesInFlight[uuid] = nil
            let guest = guests[uuid].flatMap { ObjectIdentifier($0) == inFlight.tracked ? $0 : nil }
            publish = finishPause(inFlight, outcome, guest: guest, guests: guests) || publish
        }
        return publish
    }

    /// How long reclaim waits for a guest whose QMP socket serves another client.
    static let monitorBusyBackoff: Duration = .seconds(5)

    /// How long reclaim waits at first for a guest whose pause could not start for a fault of its
    /// peer (a QMP monitor that hangs, floods or breaks the protocol); doubled at each fault in a
    /// row, up to ``peerFaultBackoffLimit``.
    static let peerFaultBackoff: Duration = .seconds(5)
    static let peerFaultBackoffLimit: Duration = .seconds(300)

    /// Applies what a pause did to its guest (if still followed) and to the retries; returns
    /// whether the pause was left to end (publish now).
    private func finishPause(_ inFlight: PauseInFlight, _ outcome: PauseOutcome, guest: TrackedGuest?, guests: [UUID: TrackedGuest]) -> Bool {
        let name = inFlight.identity.name
        if let guest, let before = outcome.before {
            guest.facts.activeJob = before.jobRunning
            if before.state != .running, guest.state == .running { guest.state = .paused }
            // We resumed it: running again, whatever a reconcile read during the pause.
            if outcome.ending == .resumed { guest.state = .running }
        }
        switch outcome.verdict {
        case .notPaused(let why, let busy):
            guard let guest else { break }
            if busy {
                monitorBusy(guest, batch: inFlight.batch, detail: why)
            } else if outcome.before == nil {
                peerFault(guest, why)
            } else {
                monitorFree(guest)
                guest.reclaimState.peerFaults = 0
                logger.info("guest \(name): not pausing: \(why)")
            }
        case .wrongPeer(let why):
            logger.error("guest \(name): \(why); not pausing")
            guest?.facts.qmpUnreachable = why
        case .notOurs, .ours:
            guest?.reclaimState.peerFaults = 0
            if let guest { monitorFree(guest) }
        }
        var leftToEnd = false
        if case .unresolved(let failure)? = outcome.ending {
            retries.add(
                PauseJournal.Entry(
                    uuid: inFlight.identity.uuid, name: name, since: outcome.times?.wallStart ?? Date().timeIntervalSince1970,
                    target: inFlight.transport.journalTarget),
                failure: failure, outstanding: outcome.outstanding, guests: guests)
            leftToEnd = true
        }
        guard let guest else { return leftToEnd }
        if outcome.suspendSent, let counts = inFlight.transport.eventCountsAfterPause(ended: outcome.times != nil && outcome.verdict == .ours) {
            // Events our suspend and resume caused are awaited before the next pause.
            guest.reclaimState.ownEvents = (counts.suspended, counts.resumed, ContinuousClock.now + .seconds(5))
        }
        let regions = guest.regions
        guest.reclaimState.hold(outcome.punch.punched) { $0 < regions.count ? regions[$0].pageCount : nil }
        if let times = outcome.times {
            audit.record(guest, times: times, outcome: outcome.punch.outcome, stoppedEarly: outcome.stoppedEarly)
        }
        return leftToEnd
    }

    /// A pause that could not start for a fault of the guest's peer: its pages wait, and the
    /// guest is tried again after a backoff that grows while the faults go on (no reconnect
    /// storm from a QEMU whose monitor floods or hangs). Logged at the first fault of a run.
    private func peerFault(_ guest: TrackedGuest, _ why: String) {
        guest.reclaimState.peerFaults += 1
        let faults = guest.reclaimState.peerFaults
        let backoff = min(Self.peerFaultBackoffLimit, Self.peerFaultBackoff * (1 << min(faults - 1, 10)))
        guest.reclaimState.backoffUntil = ContinuousClock.now + backoff
        if faults == 1 {
            logger.warning("guest \(guest.identity.name): cannot pause it: \(why); trying again in \(backoff), backing off further while this lasts")
        } else {
            logger.debug("guest \(guest.identity.name): cannot pause it (\(faults) times in a row): \(why); next try in \(backoff)")
        }
    }

    /// The guest's monitor answered: a wait for it ends here, said once.
    private func monitorFree(_ guest: TrackedGuest) {
        guard guest.reclaimState.status.deferred?.reason == .monitorBusy, let previous = guest.reclaimState.clearDeferral() else { return }
        logger.notice("guest \(guest.identity.name): reclaim goes on (was waiting: \(previous.detail))")
    }

    /// The guest's monitor serves someone else: its pages wait, and reclaim says so.
    private func monitorBusy(_ guest: TrackedGuest, batch: [(region: Int, pages: [Int])], detail: String) {
        let now = ContinuousClock.now
        guest.reclaimState.putBack(batch, at: now)
        guest.reclaimState.backoffUntil = now + Self.monitorBusyBackoff
        let deferral = ReclaimDeferral(
            .monitorBusy,
            detail: "its QMP socket serves another client (QEMU serves one at a time: \(detail)); trying again in \(Self.monitorBusyBackoff)")
        let starts = guest.reclaimState.status.deferred == nil
        _ = guest.reclaimState.recordDeferral(deferral)
        if starts { logger.notice("guest \(guest.identity.name): reclaim waits: \(deferral.detail)") }
    }

    /// Takes in the attempts at ending pauses and starts those that are due; returns whether
    /// a pause ended (publish now).
    func resumePending(_ guests: [UUID: TrackedGuest], connection: LibvirtConnection?) -> Bool {
        guard let journal, !retries.isEmpty else { return false }
        return retries.step(journal: journal, connection: connection, guests: guests)
    }

    /// A guest that leaves: its last pause recorded, its totals kept among the gone guests'.
    func guestLeaves(_ guest: TrackedGuest) {
        audit.complete(guest, force: true)
        reclaimedByGoneGuests.add(guest.reclaimState.takeTotals())
    }

    /// `run unmerge`: reclaimed ranges are allocated again (``Repopulation``).
    func startRepopulating(_ guests: [UUID: TrackedGuest]) { repopulation.start(guests.values) }

    /// After every batch: records the pauses whose events are in, counts refaults, and goes
    /// on with `run unmerge`. Returns whether to publish now (repopulation's progress).
    func afterBatch(_ guests: [UUID: TrackedGuest], engine: Engine) -> Bool {
        audit.completeAll(guests.values)
        ZeroCandidates.lookAgain(guests.values)
        RefaultWatch.check(guests.values, engine: engine, logger: logger)
        let repopulating = repopulation.step(guests.values)
        punched.record(guests.values)
        punched.saveIfDue(at: ContinuousClock.now)
        return repopulating
    }

    /// At stop: the pauses under way end (each is bounded), and the pauses still to end get a
    /// few more attempts (5 s at most); what is left stays in the journal for
    /// `samepaged --resume-paused`.
    func finishPauses(_ guests: [UUID: TrackedGuest], link: LibvirtLink) {
        // 5 s, or up to 35 s while a pause, a suspend or a resume of ours is still inside
        // libvirtd or QEMU (libvirtd can wait 30 s for the domain's job lock): one that lands
        // after we gave up would leave a pause that the journal replay, seeing the guest
        // running, has cleared.
        let start = ContinuousClock.now
        func deadlineReached() -> Bool {
            let outstanding = !pausesInFlight.isEmpty || retries.callsUnderWay
            return ContinuousClock.now >= start + (outstanding ? .seconds(35) : .seconds(5))
        }
        while !(retries.isEmpty && pausesInFlight.isEmpty) && !deadlineReached() {
            _ = collectPauses(guests)
            // libvirtd only for libvirt's pauses: a host of QMP guests may have none.
            if link.connection == nil && retries.needsLibvirt { link.connect() }
            _ = resumePending(guests, connection: link.connection)
            if !(retries.isEmpty && pausesInFlight.isEmpty) { usleep(20_000) }
        }
        for inFlight in pausesInFlight.values {
            logger.critical("\(inFlight.identity.name): a pause of samepaged's has not ended; the journal keeps it for samepaged --resume-paused")
        }
        retries.logLeft()
        for guest in guests.values { audit.complete(guest, force: true) }
        punched.record(guests.values)
        punched.saveIfDue(at: ContinuousClock.now, force: true)
    }
}

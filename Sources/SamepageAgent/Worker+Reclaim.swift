import Foundation
import GuestMemory
import Libvirt
import Logging
import SamepageCore
import SamepageModel
import Synchronization

/// Zero-page reclaim: confirmed zero pages are gathered per guest and given back to the host
/// in short pauses of that guest (``PauseSession``: suspend, verify each page is still zero,
/// punch holes, resume), within the guest's pause budget, each on a pause thread of its own.
extension Worker {
    /// Why the guest's zero pages may not be reclaimed now; nil when they may.
    func reclaimIneligibility(_ guest: TrackedGuest) -> String? {
        guard journal != nil else { return "reclaim is disabled (no pause journal)" }
        switch guest.policy.mode {
        case .off, .report: return "policy mode \(guest.policy.mode.rawValue) never changes the guest"
        case .zero, .merge: break
        }
        guard guest.mapped else { return "not mapped" }
        if guest.hasPrivateRAM {
            return "private RAM: its zero pages are the kernel's KSM's to merge (use_zero_pages), not reclaimed"
        }
        let facts = guest.facts
        // Suspend stops vCPUs, block I/O and vhost-user rings; not these writers.
        if !facts.assignedDevices.isEmpty { return "assigned devices keep writing while paused: \(facts.assignedDevices.joined(separator: ", "))" }
        if !facts.ivshmem.isEmpty { return "ivshmem devices: \(facts.ivshmem.joined(separator: ", "))" }
        if !facts.persistentMemory.isEmpty { return "persistent memory devices: \(facts.persistentMemory.joined(separator: ", "))" }
        if let security = facts.launchSecurity { return "launch security (\(security))" }
        if facts.preallocated { return "preallocated memory" }
        if facts.locked { return "locked memory" }
        if facts.activeJob { return "a job (migration, snapshot, dump) is running" }
        if !facts.dmaDescriptors.isEmpty { return "devices that DMA into guest RAM: \(facts.dmaDescriptors.joined(separator: ", "))" }
        if facts.definitionUnknown { return "its domain XML could not be read again at the last reconcile" }
        if let why = facts.qmpUnreachable { return "it cannot be paused: \(why)" }
        if let lock = facts.proxmoxLock { return "Proxmox VE lock: \(lock) (an operation of Proxmox's is under way)" }
        if let failure = unresumed.first(where: { $0.entry.uuid == guest.identity.uuid })?.failure ?? guest.reclaimState.status.resumeFailure {
            return "a pause of ours has not ended yet (\(failure))"
        }
        if guest.regions.contains(where: { $0.access != .readWrite }) { return "its backends are open read-only (mapped again shortly)" }
        if !facts.otherMappers.isEmpty {
            // The guest's own vhost-user backends may map its RAM (suspend stops their rings);
            // anything else might write a page between our check and the punch.
            return "RAM mapped by other processes: \(facts.otherMappers.map { "\($0.command) (\($0.pid))" }.joined(separator: ", "))"
        }
        if !guest.policy.reclaimHugetlbfs, guest.regions.contains(where: { if case .hugetlbfs = $0.kind { true } else { false } }) {
            return "hugetlbfs backend (a refault against an empty pool kills QEMU; set reclaim_hugetlbfs to allow)"
        }
        if guest.policy.maxPauseMsPerMinute == 0 { return "max_pause_ms_per_minute is 0" }
        if guest.state != .running { return "not running (\(guest.state))" }
        return nil
    }

    /// A page the engine found zero on two visits in a row (from its batch report).
    func zeroPageConfirmed(slot: SlotID, page: Int) {
        guard let uuid = slotOwners[slot], let guest = guests[uuid],
            let region = guest.slots.firstIndex(of: slot), region < guest.regions.count, !guest.hasPrivateRAM,
            guest.policy.mode.reclaims
        else { return }
        guest.reclaimState.addPending(page: page, region: region, at: ContinuousClock.now)
    }

    /// Pauses at most one guest per call, the one whose pending pages are due.
    func reclaimIfDue() {
        guard journal != nil, engine.run == .merge, !repopulating else { return }
        // The host-wide cap: pages that may still be held back, over all guests.
        var capRoom = Int.max
        if configuration.reclaimMaxBytes > 0 {
            let held = guests.values.reduce(0) { $0 + $1.reclaimState.heldPages } * pageSize
            capRoom = (configuration.reclaimMaxBytes - held) / pageSize
            guard capRoom > 0 else { return }
        }
        let now = ContinuousClock.now
        for guest in guests.values {
            // One pause of a guest at a time; others go on while it runs.
            guard pausesInFlight[guest.uuid] == nil else { continue }
            clearDeferralIfIdle(guest)
            guard guest.reclaimState.isDue(at: now, batchMinimum: configuration.reclaimBatchMinimum, delay: configuration.reclaimDelay)
            else { continue }
            guard ownEventsDelivered(guest) else { continue }
            // Not now: the pages wait (bounded) and are verified again inside the pause.
            guard reclaimIneligibility(guest) == nil else {
                guest.reclaimState.status.deferred = nil
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
            let size = probe ? ReclaimState.probePages : guest.reclaimState.batchSize(maxPauseMs: guest.policy.maxPauseMs)
            reclaim(guest, limit: min(capRoom, size))
            return
        }
    }

    /// Whether libvirt has delivered the lifecycle events of our last pause of the guest (or
    /// we waited 5 s for them): until then a pause waits, so an event of ours that arrives
    /// late is never taken for someone else's pause or resume.
    func ownEventsDelivered(_ guest: TrackedGuest) -> Bool {
        guard let expected = guest.reclaimState.ownEvents else { return true }
        let events = agent.stateEvents(of: guest.uuid)
        if (events.suspendedCount >= expected.suspended && events.resumedCount >= expected.resumed)
            || ContinuousClock.now >= expected.until {
            guest.reclaimState.ownEvents = nil
            return true
        }
        return false
    }

    /// Takes up to `limit` pending pages of the guest, region by region; on hugetlbfs only
    /// pages that make up whole huge pages (a smaller punch frees nothing), the others stay
    /// pending.
    func takeBatch(_ guest: TrackedGuest, limit: Int) -> [(region: Int, pages: [Int])] {
        var batch: [(region: Int, pages: [Int])] = []
        var taken = 0
        for region in guest.reclaimState.pending.keys.sorted() where taken < limit && region < guest.regions.count {
            var pages = guest.reclaimState.pending[region]!
            if let layout = guest.regions[region].hugePageLayout {
                let whole = guest.regions[region].reclaimablePages(among: pages)
                guard !whole.isEmpty else { continue }
                let perHugePage = layout.pagesPerHugePage
                // Whole huge pages only, never a part of one.
                let take = min(whole.count, max(perHugePage, (limit - taken) / perHugePage * perHugePage))
                let chosen = Array(whole.prefix(take))
                let chosenSet = Set(chosen)
                pages.removeAll { chosenSet.contains($0) }
                batch.append((region, chosen))
                guest.reclaimState.pending[region] = pages.isEmpty ? nil : pages
                taken += chosen.count
                continue
            }
            let take = min(pages.count, limit - taken)
            batch.append((region, Array(pages.prefix(take))))
            pages.removeFirst(take)
            guest.reclaimState.pending[region] = pages.isEmpty ? nil : pages
            taken += take
        }
        guest.reclaimState.oldestPending = guest.reclaimState.pending.isEmpty ? nil : ContinuousClock.now
        return batch
    }

    /// Starts one reclaim pause of `guest` on a pause thread (``PauseSession``): the agent's
    /// thread goes on scanning while it runs, and ``collectPauses()`` applies its outcome.
    func reclaim(_ guest: TrackedGuest, limit: Int) {
        guard let journal, let (transport, timeouts) = pauseTransport(for: guest) else { return }
        let batch = takeBatch(guest, limit: limit)
        guard !batch.isEmpty else {
            // Nothing whole to punch (partial huge pages): no pause until more pages come.
            guest.reclaimState.batchMayFreeSomething = false
            return
        }
        guard readyToPause(guest, batch: batch) else { return }
        // The previous pause's record is complete by now (its events were awaited).
        completePauseRecord(of: guest, force: true)
        let session = PauseSession(
            guest: guest.identity, transport: transport, journal: journal,
            punch: BatchPunch(regions: batch.map { ($0.region, guest.regions[$0.region], $0.pages) }),
            budget: PauseBudget(maxPauseMs: guest.policy.maxPauseMs), expectedResumeMicros: guest.reclaimState.resumeMicros,
            timeouts: timeouts, logger: logger)
        pausesInFlight[guest.uuid] = PauseInFlight(
            identity: guest.identity, tracked: ObjectIdentifier(guest), transport: transport, batch: batch,
            call: BlockingCall { () throws(Never) in session.run() })
    }

    /// The one place that picks how a guest is paused: over its own QMP socket for a QEMU
    /// outside libvirt, through libvirtd for libvirt's guests. nil when it cannot be paused now.
    func pauseTransport(for guest: TrackedGuest) -> (any PauseTransport, PauseTimeouts)? {
        let agent = self.agent
        let uuid = guest.uuid
        if let handle = guest.qemu {
            let timeout = Duration.milliseconds(configuration.qemuGuests.qmpTimeoutMs)
            let transport = QMPPauseTransport(handle: handle, timeout: timeout) { events in
                for event in events {
                    agent.deliver(QemuMonitorEvent(uuid: uuid, name: event.name, timestamp: event.timestamp.secondsSinceEpoch))
                }
            }
            return transport.map { ($0, PauseTimeouts(call: timeout, suspend: Self.stopTimeout)) }
        }
        guard let connection else { return nil }
        let transport = LibvirtPauseTransport(connection: connection, uuid: uuid, domainID: guest.domainID) {
            agent.stateEvents(of: uuid)
        }
        return (transport, PauseTimeouts(call: configuration.libvirtCallTimeout, suspend: configuration.libvirtCallTimeout))
    }

    /// How long `stop` over QMP may take: QEMU replies once block I/O is drained and flushed.
    static let stopTimeout: Duration = .seconds(10)

    /// How long reclaim waits for a guest whose QMP socket serves another client.
    static let monitorBusyBackoff: Duration = .seconds(5)

    /// How long reclaim waits, at first, for a guest whose pause could not start for a fault of
    /// its peer (a QMP monitor that does not answer, floods or breaks the protocol); doubled
    /// at each fault in a row, up to ``peerFaultBackoffLimit``.
    static let peerFaultBackoff: Duration = .seconds(5)
    static let peerFaultBackoffLimit: Duration = .seconds(300)

    /// Applies the outcomes of the pauses that have ended.
    func collectPauses() {
        for (uuid, inFlight) in pausesInFlight {
            guard case .success(let outcome)? = inFlight.call.result else { continue }
            pausesInFlight[uuid] = nil
            finishPause(inFlight, outcome, guest: guests[uuid].flatMap { ObjectIdentifier($0) == inFlight.tracked ? $0 : nil })
        }
    }

    /// Applies what a pause did to its guest (if it is still followed) and to the retries.
    func finishPause(_ inFlight: PauseInFlight, _ outcome: PauseOutcome, guest: TrackedGuest?) {
        let name = inFlight.identity.name
        if let guest, let before = outcome.before {
            guest.facts.activeJob = before.jobRunning
            if before.state != .running, guest.state == .running { guest.state = .paused }
        }
        switch outcome.verdict {
        case .notPaused(let why, let busy):
            guard let guest else { break }
            if busy {
                monitorBusy(guest, batch: inFlight.batch, detail: why)
            } else if outcome.before == nil {
                peerFault(guest, why)
            } else {
                guest.reclaimState.peerFaults = 0
                logger.info("guest \(name): not pausing: \(why)")
            }
        case .wrongPeer(let why):
            logger.error("guest \(name): \(why); not pausing")
            guest?.facts.qmpUnreachable = why
        case .notOurs, .ours:
            guest?.reclaimState.peerFaults = 0
        }
        if case .unresolved(let failure)? = outcome.ending {
            awaitResume(PauseJournal.Entry(
                uuid: inFlight.identity.uuid, name: name, since: outcome.times?.wallStart ?? Date().timeIntervalSince1970,
                target: inFlight.transport.journalTarget), failure: failure, outstanding: outcome.outstanding)
        }
        guard let guest else { return }
        if outcome.suspendSent, let counts = inFlight.transport.eventCountsAfterPause(ended: outcome.times != nil && outcome.verdict == .ours) {
            // Events our suspend and resume caused are awaited before the next pause.
            guest.reclaimState.ownEvents = (counts.suspended, counts.resumed, ContinuousClock.now + .seconds(5))
        }
        for (region, ranges) in outcome.punch.punched where region < guest.regions.count {
            let regionPages = guest.regions[region].pageCount
            for range in ranges { guest.reclaimState.held[region, default: PageSet(pageCount: regionPages)].insert(range) }
        }
        if let times = outcome.times {
            recordPause(guest, times: times, outcome: outcome.punch.outcome, stoppedEarly: outcome.stoppedEarly)
        }
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

    /// The guest's monitor serves someone else: its pages wait, and reclaim says so.
    private func monitorBusy(_ guest: TrackedGuest, batch: [(region: Int, pages: [Int])], detail: String) {
        let now = ContinuousClock.now
        for (region, pages) in batch {
            for page in pages { guest.reclaimState.addPending(page: page, region: region, at: now) }
        }
        guest.reclaimState.backoffUntil = now + Self.monitorBusyBackoff
        let deferral = ReclaimDeferral(
            .monitorBusy,
            detail: "its QMP socket serves another client (QEMU serves one at a time: \(detail)); trying again in \(Self.monitorBusyBackoff)")
        if guest.reclaimState.status.deferred?.reason != .monitorBusy {
            guest.reclaimState.status.countDeferral(.monitorBusy)
            logger.notice("guest \(guest.identity.name): reclaim waits: \(deferral.detail)")
        }
        guest.reclaimState.status.deferred = deferral
    }

    /// What is checked before any pause, whoever pauses: no device that DMAs into guest RAM,
    /// no other process mapping it (the index at most a second old), no Proxmox lock, and each
    /// backend still the file that was opened.
    private func readyToPause(_ guest: TrackedGuest, batch: [(region: Int, pages: [Int])]) -> Bool {
        let name = guest.identity.name
        guard checkDMADescriptors(guest) else { return false }
        // A process that mapped the backend since the last look is found before the pause:
        // the index is at most a second old when a pause starts.
        if ContinuousClock.now - lastMapperRefresh > .seconds(1) {
            refreshMappers(guests.values.filter(\.mapped))
            guard guest.facts.otherMappers.isEmpty else {
                logger.warning("guest \(name): \(reclaimIneligibility(guest) ?? "another process maps its RAM"); not pausing")
                return false
            }
        }
        refreshProxmoxLock(guest)
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

    /// Counts a pause that has ended: its costs learned, its length recorded, a backoff
    /// after an overrun, the audit line once QEMU's STOP and RESUME events are in.
    func recordPause(_ guest: TrackedGuest, times: PauseTimes, outcome: ZeroPageReclaim, stoppedEarly: Bool) {
        let name = guest.identity.name
        let (start, suspended, punched, end) = (times.start, times.suspended, times.punched, times.end)
        let wallStart = times.wallStart
        let wallEnd = wallStart + (end - start).inSeconds
        let pauseMs = (end - start).inMilliseconds
        guest.reclaimState.learnCosts(
            start: start, suspended: suspended, punched: punched, end: end,
            pagesExamined: outcome.pagesPunched + outcome.pagesChanged)
        let overrun = pauseMs > Double(guest.policy.maxPauseMs)
        guest.reclaimState.status.record(pauseMilliseconds: pauseMs, overrun: overrun)
        if stoppedEarly { guest.reclaimState.status.pausesStoppedEarly += 1 }
        guest.reclaimState.status.zeroPagesReclaimed += outcome.pagesPunched
        guest.reclaimState.reclaimedSinceRefaultCheck += outcome.pagesPunched
        guest.reclaimState.status.bytesReclaimed += outcome.bytesFreed
        // Over budget: back this guest off for a few seconds, longer while overruns keep
        // coming within a minute. The batch size follows the measured costs by itself.
        if let seconds = guest.reclaimState.recordPause(end: end, milliseconds: pauseMs, maxPauseMs: guest.policy.maxPauseMs) {
            logger.warning("guest \(name): pause of \(String(format: "%.1f", pauseMs)) ms over max_pause_ms \(guest.policy.maxPauseMs); backing off \(seconds) s")
        }
        let split = String(
            format: "suspend %.2f, verify and punch %.2f, resume %.2f ms", (suspended - start).inMilliseconds,
            (punched - suspended).inMilliseconds, (end - punched).inMilliseconds)
        // Recorded (histograms, audit log) once QEMU's STOP and RESUME events are in.
        guest.reclaimState.awaitingGuestSeen = PauseRecord(
            wallStart: wallStart, wallEnd: wallEnd, milliseconds: pauseMs, maxPauseMs: guest.policy.maxPauseMs,
            audit: "audit: paused \(name) (\(guest.identity.uuid)) for \(String(format: "%.2f", pauseMs)) ms: \(outcome.pagesPunched) zero pages punched in \(outcome.ranges) ranges, \(outcome.bytesFreed) bytes freed, \(outcome.pagesChanged) no longer zero, \(outcome.pagesSkippedPartialHugePage) in partial huge pages\(stoppedEarly ? ", stopped early" : "") (\(split))",
            until: end + .seconds(2))
        completePauseRecord(of: guest, force: false)
    }

    /// Checks, before a pause, that neither the guest's QEMU nor its vhost-user backends hold
    /// a VFIO, iommufd or vhost-vdpa descriptor (a device that DMAs into guest RAM while the
    /// guest is suspended). A process that cannot be inspected counts as holding one.
    func checkDMADescriptors(_ guest: TrackedGuest) -> Bool {
        guard let qemu = guest.process?.pid else { return false }
        var found: [String] = []
        for (pid, command) in [(qemu, "qemu")] + guest.facts.vhostUserBackends.map({ ($0.pid, $0.command) }) {
            do {
                found += try DMADevices.held(by: pid).map { "\($0) (\(command) \(pid))" }
            } catch {
                found.append("cannot inspect \(command) \(pid): \(error)")
            }
        }
        guest.facts.dmaDescriptors = found
        return found.isEmpty
    }
}

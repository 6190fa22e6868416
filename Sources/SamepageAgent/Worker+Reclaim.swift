import Foundation
import GuestMemory
import Libvirt
import Logging
import SamepageCore
import SamepageModel
import Synchronization

/// Zero-page reclaim: confirmed zero pages are gathered per guest and given back to the host
/// in short pauses of that guest (libvirt suspend, verify each page is still zero, punch holes,
/// resume), within the guest's pause budget. See "What merge means here" in DESIGN.md.
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
            // libvirt's guests are paused through libvirtd; the others over their own QMP.
            if guest.source == .libvirt && connection == nil { continue }
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

    /// Waits (briefly, polling) for a suspended event beyond the `count`th: the one our own
    /// suspend causes if it paused the guest.
    private func ownSuspendEventArrives(_ uuid: UUID, after count: Int, within limit: Duration) -> Bool {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if agent.stateEvents(of: uuid).suspendedCount > count { return true }
            usleep(1_000)
        }
        return agent.stateEvents(of: uuid).suspendedCount > count
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

    /// One reclaim pause, ours alone and bounded:
    /// 1. everything that can be checked is checked before the suspend (mode, writable
    ///    backends, DMA descriptors, the backend's identity, the guest running);
    /// 2. after the suspend, the pause must be ours: paused by a client, the same QEMU run,
    ///    and no suspend event delivered between our check and our call (someone else's);
    /// 3. verify and punch until the batch is done, the deadline comes, or any lifecycle
    ///    event of the guest arrives (an outside resume): then stop at once;
    /// 4. resume, unless someone else already did; a failed resume is retried with backoff
    ///    until it succeeds, and the journal holds the pause meanwhile.
    func reclaim(_ guest: TrackedGuest, limit: Int) {
        guard let journal else { return }
        let batch = takeBatch(guest, limit: limit)
        guard !batch.isEmpty else {
            // Nothing whole to punch (partial huge pages): no pause until more pages come.
            guest.reclaimState.batchMayFreeSomething = false
            return
        }
        guard readyToPause(guest, batch: batch) else { return }
        if guest.qemu != nil {
            reclaimOverQMP(guest, batch: batch, journal: journal)
        } else if let connection {
            reclaimOverLibvirt(guest, batch: batch, connection: connection, journal: journal)
        }
    }

    /// What is checked before any pause, whoever pauses: no device that DMAs into guest RAM,
    /// no other process mapping it (the index at most a second old), and each backend still
    /// the file that was opened.
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
        for (region, _) in batch {
            do { try guest.regions[region].ensureStillSameBackend() } catch {
                logger.warning("guest \(name): \(error); not pausing")
                return false
            }
        }
        return true
    }

    /// The libvirt pause (see ``reclaim(_:limit:)``).
    private func reclaimOverLibvirt(
        _ guest: TrackedGuest, batch: [(region: Int, pages: [Int])], connection: LibvirtConnection, journal: PauseJournal
    ) {
        let name = guest.identity.name
        let timeout = configuration.libvirtCallTimeout
        let uuid = guest.uuid
        let checked = ContinuousClock.now
        guard case .success(let before)? = LibvirtCall({ () throws(LibvirtError) in try connection.domainInfo(uuid: uuid) }).wait(timeout),
            before.state == .running, before.id == guest.domainID
        else { return }
        do {
            try journal.willPause(uuid: guest.identity.uuid, name: name, domainID: before.id)
        } catch {
            logger.error("guest \(name): cannot record the pause, not pausing: \(error)")
            return
        }
        // The previous pause's record is complete by now (its events were awaited above).
        completePauseRecord(of: guest, force: true)
        let eventsBefore = agent.stateEvents(of: uuid)
        let wallStart = Date().timeIntervalSince1970
        let start = ContinuousClock.now
        let suspendCall = LibvirtCall { () throws(LibvirtError) in try connection.suspend(uuid: uuid) }
        switch suspendCall.wait(timeout) {
        case nil:
            // libvirtd did not answer in time (its job lock, or it hangs): the suspend may
            // still happen. The journal holds the pause; it is ended as soon as libvirtd
            // answers, if it is ours.
            logger.critical("guest \(name): suspend did not return within \(timeout); resuming it once libvirtd answers")
            awaitResume(guest, call: suspendCall, failure: "suspend did not return within \(timeout)")
            return
        case .failure(let error)?:
            if error.isConnectionFailure {
                // A lost reply: the guest may be paused by us.
                logger.critical("guest \(name): suspend failed on the connection: \(error); resuming it if it is paused by us")
                awaitResume(guest, call: nil, failure: "suspend failed: \(error)")
            } else {
                // libvirt refused: nothing was paused by this call.
                logger.warning("guest \(name): suspend failed, nothing reclaimed: \(error)")
                clearJournal(guest, journal)
            }
            return
        case .success?:
            break
        }
        let suspended = ContinuousClock.now

        // Is the pause ours? A suspend of an already paused guest succeeds without pausing.
        let early = agent.stateEvents(of: uuid)
        let afterSuspend = LibvirtCall({ () throws(LibvirtError) in try connection.domainInfo(uuid: uuid) }).wait(timeout)
        var notOurs: String?
        if let at = early.suspended, at >= checked, at < start, (early.resumed ?? at) <= at,
            !ownSuspendEventArrives(uuid, after: early.suspendedCount, within: .milliseconds(200))
        {
            // Paused by someone between our check and our call, and no suspend of ours came
            // after it: our suspend found the guest paused and changed nothing. (Had it paused
            // the guest, libvirt would deliver a second suspended event: waited for above.)
            notOurs = "someone else paused it just before our suspend"
        } else if case .success(let info)? = afterSuspend {
            if info.state != .paused {
                notOurs = "it is \(info.state) right after our suspend (resumed by someone else)"
            } else if info.pausedReason != .user {
                notOurs = "it is paused for another reason (\(info.pausedReason.map(\.description) ?? "unknown"))"
            } else if info.id != before.id {
                notOurs = "its QEMU changed during the suspend"
            }
        } else {
            // The state cannot be read: the pause is ours (the suspend succeeded) but nothing
            // is punched without knowing more.
            logger.warning("guest \(name): cannot read its state after the suspend; nothing punched")
            endPause(guest, start: start)
            return
        }
        if let notOurs {
            logger.warning("guest \(name): the pause is not ours (\(notOurs)); nothing punched, left as it is")
            clearJournal(guest, journal)
            // Events our suspend may have caused are awaited before the next pause.
            guest.reclaimState.ownEvents = (eventsBefore.suspendedCount + 1, eventsBefore.resumedCount, ContinuousClock.now + .seconds(5))
            return
        }

        // Verify and punch, bounded: the resume's expected cost is kept out of the budget.
        // At least a millisecond: a probe after a busy spell carries the busy spell's resume
        // cost, and a probe that punches nothing learns nothing about the pages.
        let budget = max(.milliseconds(1), Duration.microseconds(Int64(Double(guest.policy.maxPauseMs) * 1000 - guest.reclaimState.resumeMicros * 1.2)))
        let deadline = start + budget
        let agent = self.agent
        var outsideChange = false
        let shouldContinue: () -> Bool = {
            let events = agent.stateEvents(of: uuid)
            if let at = events.resumed, at > start { outsideChange = true }
            if let at = events.other, at > start { outsideChange = true }
            return !outsideChange && ContinuousClock.now < deadline
        }
        let outcome = punch(guest, batch: batch, while: shouldContinue)
        let stoppedEarly = outcome.stoppedEarly || outsideChange || ContinuousClock.now >= deadline
        let punched = ContinuousClock.now
        // Our suspend made one suspended event, and the pause's end one resumed event (ours, or
        // the outside resume's): wait for both before the next pause.
        guest.reclaimState.ownEvents = (eventsBefore.suspendedCount + 1, eventsBefore.resumedCount + 1, ContinuousClock.now + .seconds(5))
        if outsideChange {
            // Someone else changed the guest's state while we held it: punching stopped at
            // once. If their resume ended our pause, nothing of ours is left to end. If the
            // guest is still paused by a client (the event was not a resume, or came late),
            // the pause is still ours and is ended as every pause is: a pause of ours is
            // never left behind on a doubt.
            // A resumed event since our suspend means our pause ended: whatever holds the guest
            // now is not ours. Otherwise (a device event, a stop) the pause is still ours if
            // the guest is still paused by a client; if its state cannot be read, the pause is
            // ended through the retry path, which reads the state before it resumes.
            let resumedSince = agent.stateEvents(of: uuid).resumedCount > eventsBefore.resumedCount
            let after = resumedSince ? nil : LibvirtCall({ () throws(LibvirtError) in try connection.domainInfo(uuid: uuid) }).wait(timeout)
            if resumedSince {
                logger.warning("guest \(name): resumed by someone else during our pause; punching stopped, not resuming it")
                clearJournal(guest, journal)
            } else if case .success(let info)? = after {
                if info.state == .paused, info.pausedReason == .user, info.id == before.id {
                    logger.warning("guest \(name): a lifecycle event arrived during our pause; punching stopped; ending our pause")
                    endPause(guest, start: start)
                } else {
                    logger.warning("guest \(name): its state changed during our pause (\(info.state)); punching stopped, not resuming it")
                    clearJournal(guest, journal)
                }
            } else {
                logger.warning("guest \(name): a lifecycle event arrived during our pause and its state cannot be read; punching stopped, ending our pause once it can be")
                awaitResume(guest, call: nil, failure: "state unknown after an event during our pause")
            }
        } else {
            endPause(guest, start: start)
        }
        recordPause(guest, start: start, suspended: suspended, punched: punched, wallStart: wallStart, outcome: outcome, stoppedEarly: stoppedEarly)
    }

    /// Verifies and punches the batch's pages, region by region, while `shouldContinue`
    /// says so (it is asked again before every run of pages); the punched ranges are held.
    func punch(_ guest: TrackedGuest, batch: [(region: Int, pages: [Int])], while shouldContinue: () -> Bool) -> ZeroPageReclaim {
        var outcome = ZeroPageReclaim()
        for (region, pages) in batch {
            guard shouldContinue() else { break }
            do {
                let result = try guest.regions[region].reclaimZeroPages(pages, while: shouldContinue)
                let regionPages = guest.regions[region].pageCount
                for range in result.punched { guest.reclaimState.held[region, default: PageSet(pageCount: regionPages)].insert(range) }
                outcome.add(result)
            } catch {
                logger.error("guest \(guest.identity.name): reclaim in \(guest.regions[region].backendID) stopped: \(error)")
                break
            }
        }
        return outcome
    }

    /// Counts a pause that has ended (now): its costs learned, its length recorded, a backoff
    /// after an overrun, the audit line once QEMU's STOP and RESUME events are in.
    func recordPause(
        _ guest: TrackedGuest, start: ContinuousClock.Instant, suspended: ContinuousClock.Instant,
        punched: ContinuousClock.Instant, wallStart: Double, outcome: ZeroPageReclaim, stoppedEarly: Bool
    ) {
        let name = guest.identity.name
        let end = ContinuousClock.now
        let wallEnd = Date().timeIntervalSince1970

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

import Foundation
import GuestMemory
import Libvirt
import Logging
import SamepageCore

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
        let facts = guest.facts
        // Suspend stops vCPUs, block I/O and vhost-user rings; not these writers.
        if !facts.assignedDevices.isEmpty { return "assigned devices keep writing while paused: \(facts.assignedDevices.joined(separator: ", "))" }
        if !facts.ivshmem.isEmpty { return "ivshmem devices: \(facts.ivshmem.joined(separator: ", "))" }
        if !facts.persistentMemory.isEmpty { return "persistent memory devices: \(facts.persistentMemory.joined(separator: ", "))" }
        if let security = facts.launchSecurity { return "launch security (\(security))" }
        if facts.preallocated { return "preallocated memory" }
        if facts.locked { return "locked memory" }
        if facts.activeJob { return "a job (migration, snapshot, dump) is running" }
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

    /// The engine's reclaim hook: a page found zero on two visits in a row.
    func zeroPageConfirmed(slot: SlotID, page: Int) {
        guard let uuid = slotOwners[slot], let guest = guests[uuid],
            let region = guest.slots.firstIndex(of: slot),
            guest.policy.mode == .zero || guest.policy.mode == .merge,
            guest.hot[region]?.contains(page) != true
        else { return }
        // Bounded: a guest that cannot be paused must not grow the agent without limit.
        guard guest.pending[region, default: []].count < 1 << 18 else { return }
        guest.pending[region, default: []].append(page)
        if guest.oldestPending == nil { guest.oldestPending = ContinuousClock.now }
    }

    /// Pauses at most one guest per call, the one whose pending pages are due.
    func reclaimIfDue() {
        guard connection != nil, journal != nil, engine.run == .merge, !repopulating else { return }
        // The host-wide cap: pages that may still be held back, over all guests.
        var capRoom = Int.max
        if configuration.reclaimMaxBytes > 0 {
            let held = guests.values.reduce(0) { $0 + $1.held.values.reduce(0) { $0 + $1.count } } * pageSize
            capRoom = (configuration.reclaimMaxBytes - held) / pageSize
            guard capRoom > 0 else { return }
        }
        let now = ContinuousClock.now
        for guest in guests.values {
            let pendingCount = guest.pending.values.reduce(0) { $0 + $1.count }
            guard pendingCount > 0, let oldest = guest.oldestPending else { continue }
            guard pendingCount >= configuration.reclaimBatchMinimum || now - oldest >= configuration.reclaimDelay else { continue }
            if let until = guest.backoffUntil, now < until { continue }
            // Not now: the pages wait (bounded) and are verified again inside the pause.
            guard reclaimIneligibility(guest) == nil else { continue }
            // The duty cycle: paused milliseconds in the last minute, plus this pause's estimate.
            guest.recentPauses.removeAll { now - $0.0 > .seconds(60) }
            let used = guest.recentPauses.reduce(0) { $0 + $1.1 }
            let budget = Double(guest.policy.maxPauseMs)
            guard used + budget <= Double(guest.policy.maxPauseMsPerMinute) else { continue }
            // Size the batch from the measured cost so the pause stays within max_pause_ms,
            // aiming at 70% of it: suspend and resume (most of a pause) vary by a millisecond or two.
            let room = max(0, budget * 700 - guest.pauseFixedMicros)
            let limit = min(capRoom, max(64, Int(room / max(guest.pausePerPageMicros, 0.5))))
            reclaim(guest, limit: limit)
            return
        }
    }

    private func reclaim(_ guest: TrackedGuest, limit: Int) {
        guard let connection, let journal else { return }
        // Take up to `limit` pages, region by region.
        var batch: [(region: Int, pages: [Int])] = []
        var taken = 0
        for region in guest.pending.keys.sorted() where taken < limit {
            var pages = guest.pending[region]!
            let take = min(pages.count, limit - taken)
            batch.append((region, Array(pages.prefix(take))))
            pages.removeFirst(take)
            guest.pending[region] = pages.isEmpty ? nil : pages
            taken += take
        }
        guest.oldestPending = guest.pending.isEmpty ? nil : ContinuousClock.now

        // Only a guest that runs, and only inside a pause of our own.
        guard let info = try? connection.domainInfo(uuid: guest.uuid), info.state == .running else { return }
        do {
            try journal.willPause(uuid: guest.identity.uuid, name: guest.identity.name)
        } catch {
            logger.error("guest \(guest.identity.name): cannot record the pause, not pausing: \(error)")
            return
        }
        let start = ContinuousClock.now
        do {
            try connection.suspend(uuid: guest.uuid)
        } catch {
            // The suspend may have happened even though the call failed (a lost reply): undo
            // it the way every pause is undone, which clears the journal only once the guest
            // is known to run.
            logger.warning("guest \(guest.identity.name): suspend failed, nothing reclaimed: \(error)")
            resume(guest.uuid, name: guest.identity.name)
            return
        }
        let suspended = ContinuousClock.now
        var outcome = ZeroPageReclaim()
        for (region, pages) in batch where region < guest.regions.count {
            do {
                let result = try guest.regions[region].reclaimZeroPages(pages)
                let regionPages = guest.regions[region].pageCount
                for range in result.punched { guest.held[region, default: PageSet(pageCount: regionPages)].insert(range) }
                outcome.pagesPunched += result.pagesPunched
                outcome.pagesChanged += result.pagesChanged
                outcome.ranges += result.ranges
                outcome.bytesFreed += result.bytesFreed
            } catch {
                logger.error("guest \(guest.identity.name): reclaim in \(guest.regions[region].backendID) stopped: \(error)")
                break
            }
        }
        let punched = ContinuousClock.now
        resume(guest.uuid, name: guest.identity.name)
        let end = ContinuousClock.now

        let pauseMs = Self.milliseconds(end - start)
        let fixedMicros = (Self.milliseconds(suspended - start) + Self.milliseconds(end - punched)) * 1000
        let examined = max(1, outcome.pagesPunched + outcome.pagesChanged)
        let perPage = Self.milliseconds(punched - suspended) * 1000 / Double(examined)
        // Slow suspends happen (the first one of a guest, a busy host): one outlier must not
        // shrink every later batch, so a sample counts for at most twice the estimate. The
        // per-page cost is learned from batches large enough to show it.
        guest.pauseFixedMicros = 0.8 * guest.pauseFixedMicros + 0.2 * min(fixedMicros, 2 * guest.pauseFixedMicros)
        if examined >= 64 {
            guest.pausePerPageMicros = 0.7 * guest.pausePerPageMicros + 0.3 * perPage
        }
        let overrun = pauseMs > Double(guest.policy.maxPauseMs)
        guest.reclaim.record(pauseMilliseconds: pauseMs, overrun: overrun)
        configuration.pauseObserver?(ReclaimPause(guest: guest.identity, trustGroup: guest.policy.trustGroup, milliseconds: pauseMs))
        guest.reclaim.zeroPagesReclaimed += outcome.pagesPunched
        guest.reclaimedSinceRefaultCheck += outcome.pagesPunched
        guest.reclaim.bytesReclaimed += outcome.bytesFreed
        guest.recentPauses.append((end, pauseMs))
        if overrun {
            // Over budget: back this guest off for a few seconds, longer while overruns keep
            // coming within a minute. The batch size follows the measured costs by itself.
            let recentOverruns = guest.recentPauses.filter { $0.1 > Double(guest.policy.maxPauseMs) }.count
            let seconds = min(30, 2 * recentOverruns)
            guest.backoffUntil = end + .seconds(seconds)
            logger.warning("guest \(guest.identity.name): pause of \(String(format: "%.1f", pauseMs)) ms over max_pause_ms \(guest.policy.maxPauseMs); backing off \(seconds) s")
        }
        let split = String(
            format: "suspend %.2f, verify and punch %.2f, resume %.2f ms", Self.milliseconds(suspended - start),
            Self.milliseconds(punched - suspended), Self.milliseconds(end - punched))
        logger.info("audit: paused \(guest.identity.name) (\(guest.identity.uuid)) for \(String(format: "%.2f", pauseMs)) ms: \(outcome.pagesPunched) zero pages punched in \(outcome.ranges) ranges, \(outcome.bytesFreed) bytes freed, \(outcome.pagesChanged) no longer zero (\(split))")
    }

    /// Every 5 s, per guest: reclaimed pages that are resident again were touched by the guest
    /// (a read or write fault allocates a hole). They are counted, never reclaimed again while
    /// the guest runs, and a guest that refaults much of what was reclaimed is backed off.
    func checkRefaults() {
        let now = ContinuousClock.now
        let vector = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: 512)
        defer { vector.deallocate() }
        for guest in guests.values where !guest.held.isEmpty && now >= guest.nextRefaultCheck {
            guest.nextRefaultCheck = now + .seconds(5)
            var refaults = 0
            for (region, set) in guest.held where region < guest.regions.count {
                var held = set
                for range in set.ranges {
                    var start = range.lowerBound
                    while start < range.upperBound {
                        let window = start..<min(range.upperBound, start + 512)
                        guard (try? guest.regions[region].residency(of: window, into: vector)) != nil else { break }
                        for page in window where vector[page - window.lowerBound] & 1 != 0 {
                            held.remove(page)
                            engine.backOff(slot: guest.slots[region], page: page)
                            guest.hot[region, default: PageSet(pageCount: set.pageCount)].insert(page..<(page + 1))
                            refaults += 1
                        }
                        start = window.upperBound
                    }
                }
                guest.held[region] = held.isEmpty ? nil : held
            }
            guest.reclaim.zeroPagesRefaulted += refaults
            if refaults > 64 && refaults * 2 > guest.reclaimedSinceRefaultCheck {
                guest.backoffUntil = now + .seconds(60)
                logger.warning("guest \(guest.identity.name): \(refaults) reclaimed pages refaulted in 5 s; backing off reclaim for 60 s")
            }
            guest.reclaimedSinceRefaultCheck = 0
        }
    }

    /// `run unmerge`: reclaimed ranges are allocated again, 64 MiB per loop, so operators get
    /// their memory committed back; progress shows as `pages_to_repopulate`.
    func startRepopulating() {
        repopulating = true
        for guest in guests.values {
            guest.pending = [:]
            guest.oldestPending = nil
        }
        logger.notice("run unmerge: allocating \(guests.values.reduce(0) { $0 + $1.held.values.reduce(0) { $0 + $1.count } }) reclaimed pages again")
    }

    func repopulateStep() {
        guard repopulating else { return }
        var budget = 16_384
        for guest in guests.values where budget > 0 {
            for (region, set) in guest.held where budget > 0 && region < guest.regions.count {
                var held = set
                for range in set.ranges where budget > 0 {
                    let part = range.lowerBound..<min(range.upperBound, range.lowerBound + budget)
                    do {
                        try guest.regions[region].repopulate(part)
                    } catch {
                        logger.error("guest \(guest.identity.name): repopulating \(part): \(error)")
                        budget = 0
                        break
                    }
                    for page in part { held.remove(page) }
                    budget -= part.count
                }
                guest.held[region] = held.isEmpty ? nil : held
            }
        }
        if guests.values.allSatisfy({ $0.held.isEmpty }) {
            repopulating = false
            logger.notice("run unmerge: every reclaimed range is allocated again")
        }
        publish()
    }

    /// Resumes a guest this agent paused and clears its journal entry; on failure the entry
    /// stays and the resume is retried on every loop.
    private func resume(_ uuid: UUID, name: String) {
        let key = uuid.uuidString.lowercased()
        for attempt in 1...3 {
            do {
                try connection?.resume(uuid: uuid)
                try? journal?.didResume(uuid: key)
                return
            } catch let error where error.isOperationInvalid {
                // Not paused any more (resumed by someone, or gone): nothing left to undo.
                try? journal?.didResume(uuid: key)
                return
            } catch {
                logger.critical("guest \(name): resume attempt \(attempt) failed: \(error)")
            }
        }
        unresumed.append(PauseJournal.Entry(uuid: key, name: name, since: Date().timeIntervalSince1970))
    }

    /// Resumes guests left paused by us: by an earlier run that died, or a failed resume.
    func resumeJournaled() {
        guard let connection, let journal else { return }
        unresumed = resumePausedGuests(unresumed, connection: connection, journal: journal, logger: logger)
    }

    static func milliseconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
    }
}

/// Resumes the journal's guests that are still paused and clears their entries; returns the
/// entries it could not resume. A guest that is gone, or no longer paused, needs nothing.
func resumePausedGuests(
    _ entries: [PauseJournal.Entry], connection: LibvirtConnection, journal: PauseJournal, logger: Logger
) -> [PauseJournal.Entry] {
    var left: [PauseJournal.Entry] = []
    for entry in entries {
        guard let uuid = UUID(uuidString: entry.uuid) else { continue }
        do {
            let info = try connection.domainInfo(uuid: uuid)
            if info.state == .paused {
                try connection.resume(uuid: uuid)
                logger.notice("resumed \(entry.name), paused by samepaged since \(Date(timeIntervalSince1970: entry.since))")
            }
            try? journal.didResume(uuid: entry.uuid)
        } catch let error where error.isNoDomain {
            try? journal.didResume(uuid: entry.uuid)
        } catch {
            logger.critical("cannot resume \(entry.name), paused by samepaged: \(error)")
            left.append(entry)
        }
    }
    return left
}

extension Agent {
    /// `samepaged --resume-paused`: resumes every guest the journal says samepaged paused,
    /// for the service manager to run after the daemon stopped, however it stopped. Returns
    /// how many entries could not be resumed.
    public static func resumePaused(journal path: String, uri: String, logger: Logger) throws -> Int {
        let journal = PauseJournal(path: path)
        let entries = try journal.entries()
        guard !entries.isEmpty else { return 0 }
        let connection = try LibvirtConnection(uri: uri)
        return resumePausedGuests(entries, connection: connection, journal: journal, logger: logger).count
    }
}

import Foundation
import GuestMemory
import Logging
import SamepageModel

/// The record of each pause that ended: its costs learned and its length counted in the
/// guest's ``ReclaimState``, a backoff after an overrun, and, once QEMU's `STOP` and `RESUME`
/// events are in (or waited for long enough), what the guest saw, the pause observer (the
/// Prometheus histograms) and the audit line.
///
/// Its own room: it keeps no state of its own (the pause waiting for its events is the
/// guest's, ``ReclaimState/awaitingGuestSeen``), only what it is given at init, and it is
/// the one place that writes the audit log.
struct PauseAudit {
    let agent: Agent
    var logger: Logger { agent.logger }

    /// Counts a pause that has ended: its costs learned, its length recorded, a backoff
    /// after an overrun, the audit line once QEMU's STOP and RESUME events are in.
    func record(_ guest: TrackedGuest, times: PauseTimes, outcome: ZeroPageReclaim, stoppedEarly: Bool) {
        let name = guest.identity.name
        let maxPauseMs = guest.policy.maxPauseMs
        let (start, suspended, punched, end) = (times.start, times.suspended, times.punched, times.end)
        let wallStart = times.wallStart
        let wallEnd = wallStart + (end - start).inSeconds
        let pauseMs = (end - start).inMilliseconds
        guest.reclaimState.learnCosts(
            start: start, suspended: suspended, punched: punched, end: end,
            pagesExamined: outcome.pagesPunched + outcome.pagesChanged)
        guest.reclaimState.countPause(milliseconds: pauseMs, maxPauseMs: maxPauseMs, outcome: outcome, stoppedEarly: stoppedEarly)
        let split = String(
            format: "suspend %.2f, verify and punch %.2f, resume %.2f ms", (suspended - start).inMilliseconds,
            (punched - suspended).inMilliseconds, (end - punched).inMilliseconds)
        // Recorded (histograms, audit log) once QEMU's STOP and RESUME events are in.
        guest.reclaimState.awaitingGuestSeen = PauseRecord(
            wallStart: wallStart, wallEnd: wallEnd, milliseconds: pauseMs, punchMilliseconds: (punched - suspended).inMilliseconds,
            end: end, maxPauseMs: maxPauseMs,
            audit: "audit: paused \(name) (\(guest.identity.uuid)) for \(String(format: "%.2f", pauseMs)) ms: \(outcome.pagesPunched) zero pages punched in \(outcome.ranges) ranges, \(outcome.bytesFreed) bytes freed, \(outcome.pagesChanged) no longer zero, \(outcome.pagesSkippedPartialHugePage) in partial huge pages\(stoppedEarly ? ", stopped early" : "") (\(split))",
            until: end + .seconds(2))
        complete(guest, force: false)
    }

    /// Records the pauses whose QEMU events have arrived, or waited for long enough.
    func completeAll(_ guests: some Sequence<TrackedGuest>) {
        for guest in guests where guest.reclaimState.awaitingGuestSeen != nil {
            complete(guest, force: false)
        }
    }

    /// Records the guest's ended pause: both lengths in its status and the pause observer
    /// (the Prometheus histograms), and the audit line. Waits (returns with the record kept)
    /// until QEMU's events are in, unless `force` or the wait is over.
    func complete(_ guest: TrackedGuest, force: Bool) {
        guard let record = guest.reclaimState.awaitingGuestSeen else { return }
        let seen = record.guestSeenMilliseconds(among: agent.monitorEvents(of: guest.uuid))
        guard seen != nil || force || ContinuousClock.now >= record.until else { return }
        guest.reclaimState.awaitingGuestSeen = nil
        if let seen {
            guest.reclaimState.status.record(guestSeenMilliseconds: seen, overrun: seen > Double(record.maxPauseMs))
            guest.reclaimState.guestSeen.add(guestSeenMs: seen, punchMs: record.punchMilliseconds)
        }
        // max_pause_ms is what the guest sees (the call-to-return length when QEMU's events did
        // not come): over it, back this guest off for a few seconds, longer while overruns keep
        // coming within a minute. The duty cycle counts the same length.
        let length = seen ?? record.milliseconds
        if let seconds = guest.reclaimState.recordPause(end: record.end, milliseconds: length, maxPauseMs: record.maxPauseMs) {
            logger.warning("guest \(guest.identity.name): pause of \(String(format: "%.1f", length)) ms \(seen == nil ? "(call to return)" : "as the guest saw it") over max_pause_ms \(record.maxPauseMs); backing off \(seconds) s")
        }
        agent.configuration.pauseObserver?(
            ReclaimPause(guest: guest.identity, trustGroup: guest.policy.trustGroup, milliseconds: record.milliseconds, guestSeenMilliseconds: seen))
        let saw = seen.map { String(format: "the guest saw %.2f ms (QEMU STOP to RESUME)", $0) } ?? "what the guest saw is unknown (no QEMU STOP and RESUME events)"
        logger.info("\(record.audit); \(saw)")
    }
}

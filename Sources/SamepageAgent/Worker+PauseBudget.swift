import Foundation
import LinuxSystem
import SamepageModel

/// Pauses that keep their budget or do not happen: the host's CPU pressure and each guest's
/// measured pause costs decide whether a due reclaim pauses now or waits, and QEMU's own
/// STOP and RESUME events say how long the guest itself was paused.
extension Worker {
    /// Reads `/proc/pressure/cpu` at most twice a second (a 4 KiB read).
    func readCPUPressure() {
        let now = ContinuousClock.now
        guard now >= nextPressureReading else { return }
        // Only while some guest has zero pages waiting for a pause: a host with no reclaiming
        // guest reads nothing. (The first pause after idle then waits for a one-second window.)
        guard guests.values.contains(where: { $0.reclaimState.pendingPages > 0 }) else {
            nextPressureReading = now + .milliseconds(500)
            cpuPressure = nil
            cpuPressureWindow = PressureWindow()
            cpuTimesWindowStart = nil
            cpuIdlePercent = nil
            return
        }
        nextPressureReading = now + .milliseconds(500)
        do {
            let stall = try PressureStall.read("cpu")
            cpuPressure = stall
            cpuPressureWindow.add(total: stall.some.totalMicroseconds, at: now)
            pressureUnavailable = nil
            if let times = try? CPUTimes.read() {
                if let start = cpuTimesWindowStart {
                    if now - start.at >= .seconds(1) {
                        cpuIdlePercent = times.idlePercent(since: start.times)
                        cpuTimesWindowStart = (now, times)
                    }
                } else {
                    cpuTimesWindowStart = (now, times)
                }
            }
        } catch {
            if pressureUnavailable == nil {
                logger.warning("cannot read the host's CPU pressure (\(error)): reclaim is not deferred for it")
            }
            pressureUnavailable = error.description
            cpuPressure = nil
        }
    }

    /// The host's CPU pressure that decides deferral, in percent: the larger of the last
    /// second's (prompt when a load starts) and the kernel's 10-second average (which keeps
    /// reclaim waiting a little after it ends). nil when the host has no PSI.
    var hostCPUPressure: Double? {
        guard let cpuPressure else { return nil }
        return max(cpuPressure.some.avg10, cpuPressureWindow.percent ?? 0)
    }

    /// Decides whether the due reclaim of `guest` waits, and keeps its status and log in step:
    /// each start of a wait, or change of its reason, is counted and logged once, and so is
    /// its end. Returns true when the pause may go ahead.
    func pauseFitsBudget(_ guest: TrackedGuest, at now: ContinuousClock.Instant) -> Bool {
        // Until a first window of a second is measured, the host's load is not known: wait.
        // (max_cpu_pressure = 100 never waits, for either.)
        let waits = configuration.reclaimMaxCPUPressure < 100
        // Not read yet is not the same as no PSI on this kernel (`pressureUnavailable`).
        guard !waits || pressureUnavailable != nil || (cpuPressure != nil && cpuPressureWindow.percent != nil && cpuIdlePercent != nil)
        else { return false }
        var deferral = guest.reclaimState.deferral(
            maxPauseMs: guest.policy.maxPauseMs, cpuPressure: hostCPUPressure,
            pressureLimit: configuration.reclaimMaxCPUPressure, at: now)
        // Every CPU busy: libvirtd and QEMU would wait for a slice as soon as they wake.
        if waits, deferral == nil, let idle = cpuIdlePercent, idle < Self.minimumIdlePercent {
            deferral = ReclaimDeferral(
                .cpuPressure, detail: String(format: "the CPUs were %.1f%% busy over the last second (reclaim waits above %.0f%%)", 100 - idle, 100 - Self.minimumIdlePercent))
        }
        let previous = guest.reclaimState.status.deferred
        if let deferral {
            if previous?.reason != deferral.reason {
                guest.reclaimState.status.countDeferral(deferral.reason)
                logger.notice("guest \(guest.identity.name): reclaim waits: \(deferral.detail)")
            }
            guest.reclaimState.status.deferred = deferral
            return false
        }
        if previous != nil {
            logger.notice("guest \(guest.identity.name): reclaim goes on (was waiting: \(previous!.detail))")
            guest.reclaimState.status.deferred = nil
        }
        return true
    }

    /// Reclaim waits while the CPUs were idle less than this share of the last second.
    static let minimumIdlePercent = 10.0

    /// Clears a deferral that no longer applies because nothing is due (no pending page).
    func clearDeferralIfIdle(_ guest: TrackedGuest) {
        if guest.reclaimState.status.deferred != nil, guest.reclaimState.pendingPages == 0 {
            guest.reclaimState.status.deferred = nil
        }
    }

    /// Records the pauses whose QEMU events have arrived, or waited for long enough.
    func completePauseRecords() {
        for guest in guests.values where guest.reclaimState.awaitingGuestSeen != nil {
            completePauseRecord(of: guest, force: false)
        }
    }

    /// Records the guest's ended pause: both lengths in its status and the pause observer
    /// (the Prometheus histograms), and the audit line. Waits (returns with the record kept)
    /// until QEMU's events are in, unless `force` or the wait is over.
    func completePauseRecord(of guest: TrackedGuest, force: Bool) {
        guard let record = guest.reclaimState.awaitingGuestSeen else { return }
        let seen = record.guestSeenMilliseconds(among: agent.monitorEvents(of: guest.uuid))
        guard seen != nil || force || ContinuousClock.now >= record.until else { return }
        guest.reclaimState.awaitingGuestSeen = nil
        if let seen { guest.reclaimState.status.record(guestSeenMilliseconds: seen, overrun: seen > Double(record.maxPauseMs)) }
        configuration.pauseObserver?(
            ReclaimPause(guest: guest.identity, trustGroup: guest.policy.trustGroup, milliseconds: record.milliseconds, guestSeenMilliseconds: seen))
        let saw = seen.map { String(format: "the guest saw %.2f ms (QEMU STOP to RESUME)", $0) } ?? "what the guest saw is unknown (no QEMU STOP and RESUME events)"
        logger.info("\(record.audit); \(saw)")
    }
}

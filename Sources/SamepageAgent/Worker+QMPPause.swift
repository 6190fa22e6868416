import Glibc
import Foundation
import GuestMemory
import Libvirt
import QMP
import SamepageCore
import SamepageModel

/// A reclaim pause over QMP, for a guest libvirt does not manage. The whole exchange is one
/// connection to the guest's QMP server socket, which QEMU serves to one client at a time:
/// while samepaged holds it, a Proxmox `qm` command (or anyone else on that socket) queues
/// behind the pause instead of finding the guest paused.
///
/// 1. Before connecting: Proxmox's `lock:` (a backup, migration or snapshot is under way),
///    and the QEMU is still the process found.
/// 2. Connect with a short timeout: a monitor that does not greet serves another client;
///    reclaim defers (`monitor_busy`) and tries again later, never waits.
/// 3. `query-status` must say `running`; no job and no migration may run.
/// 4. The pause is journalled (with the socket, the pid and its start time); every event
///    QEMU has sent is read, then `stop`, whose reply comes after QEMU has stopped the
///    vCPUs, drained block I/O and stopped vhost-user rings. The pause is ours only if a
///    STOP event follows our command (order on the wire, not clocks: `stop` on a guest
///    already stopped emits nothing) and `query-status` then says `paused` (not an I/O
///    error or the watchdog that stopped it meanwhile). A `stop` not answered in time is
///    waited for on the same connection, where QEMU answers in order.
/// 5. Verify and punch within the budget, stopping at once at any event QEMU sends meanwhile
///    (another monitor's `cont`, a reset, a device removed).
/// 6. `cont`; after an event, only if no RESUME came and the guest is still paused by a
///    client. Disconnect. A `cont` that fails leaves the journal entry, retried with backoff
///    over a new connection.
extension Worker {
    func reclaimOverQMP(_ guest: TrackedGuest, batch: [(region: Int, pages: [Int])], journal: PauseJournal) {
        guard let handle = guest.qemu, let socket = handle.qmpSocket, let target = handle.journalTarget else { return }
        let name = guest.identity.name
        let timeout = Duration.milliseconds(configuration.qemuGuests.qmpTimeoutMs)
        refreshProxmoxLock(guest)
        if let lock = guest.facts.proxmoxLock {
            logger.info("guest \(name): Proxmox VE lock \(lock); not pausing")
            return
        }
        guard (try? QEMUGuestHandle.startTime(of: handle.pid)) == handle.startTime else { return }

        var qmp: QMPConnection
        do {
            qmp = try QMPConnection.connect(path: socket, timeout: timeout)
        } catch {
            if case .busy = error {
                monitorBusy(guest, batch: batch, socket: socket)
            } else {
                logger.warning("guest \(name): QMP at \(socket): \(error); not pausing")
            }
            return
        }
        do {
            // The socket answers for this guest: not a QEMU that took its path since.
            if let mismatch = try Self.identityMismatch(&qmp, handle: handle, timeout: timeout) {
                logger.error("guest \(name): \(mismatch); not pausing")
                guest.facts.qmpUnreachable = mismatch
                return
            }
            let status = try qmp.queryStatus(timeout: timeout)
            guest.state = Self.domainState(status)
            guard status.status == .running else {
                logger.info("guest \(name): QEMU is \(status.status); not pausing")
                return
            }
            guest.facts.activeJob = try Self.hasActiveJob(&qmp, timeout: timeout)
            guard !guest.facts.activeJob else {
                logger.info("guest \(name): a job or migration is running; not pausing")
                return
            }
        } catch {
            logger.warning("guest \(name): QMP at \(socket): \(error); not pausing")
            return
        }
        do {
            try journal.willPause(uuid: guest.identity.uuid, name: name, domainID: nil, qmp: target)
        } catch {
            logger.error("guest \(name): cannot record the pause, not pausing: \(error)")
            return
        }
        completePauseRecord(of: guest, force: true)
        // Every event so far is read and set aside: a STOP read from here on follows our
        // `stop` on the wire, whatever the clocks say.
        do throws(QMPError) { deliver(try Self.drainEvents(&qmp), of: guest) } catch {
            logger.warning("guest \(name): QMP at \(socket): \(error); not pausing")
            clearJournal(guest, journal)
            return
        }
        let wallStart = Date().timeIntervalSince1970
        let start = ContinuousClock.now
        do {
            // Its reply comes once block I/O is drained: waited for, within a bound of its own.
            try qmp.stop(timeout: Self.stopTimeout)
        } catch {
            stopFailed(guest, error, qmp: &qmp, journal: journal)
            return
        }
        let suspended = ContinuousClock.now
        // Ours only if QEMU stopped now (a STOP event after our command; `stop` on a guest
        // already stopped emits none) and the guest is paused by a client: not an I/O error
        // or the watchdog that stopped it between our query-status and our stop.
        let events = qmp.takeEvents()
        deliver(events, of: guest)
        let afterStop: QMPRunState
        do {
            afterStop = try qmp.queryStatus(timeout: Self.contTimeout)
        } catch {
            logger.critical("guest \(name): its state after our stop cannot be read: \(error); nothing punched, ending our pause once it can be")
            awaitResume(guest, call: nil, failure: "state unknown after stop over QMP: \(error)")
            return
        }
        guard events.contains(where: { $0.name == "STOP" }), afterStop.status == .paused else {
            let why = switch afterStop.status {
            case .paused: "someone else paused it just before our stop"
            case .running: "someone else resumed it right after our stop"
            default: "QEMU stopped it itself (\(afterStop.status))"
            }
            logger.warning("guest \(name): the pause is not ours (\(why)); nothing punched, left as it is")
            clearJournal(guest, journal)
            if events.contains(where: { $0.name == "STOP" }), afterStop.status == .running {
                // Our stop paused it, and someone else's cont ended that: a pause of ours, cut short.
                qmp.close()
                recordPause(guest, start: start, suspended: suspended, punched: ContinuousClock.now, wallStart: wallStart,
                            outcome: ZeroPageReclaim(), stoppedEarly: true)
            }
            return
        }

        let budget = max(.milliseconds(1), Duration.microseconds(Int64(Double(guest.policy.maxPauseMs) * 1000 - guest.reclaimState.resumeMicros * 1.2)))
        let deadline = start + budget
        var outside: [QMPEvent] = []
        var monitorLost: QMPError?
        let outcome = punch(guest, batch: batch) {
            // Any event now is someone else's doing: stop punching at once.
            if outside.isEmpty && monitorLost == nil {
                do throws(QMPError) { outside = try qmp.readEvents(until: .now) } catch { monitorLost = error }
            }
            return outside.isEmpty && monitorLost == nil && ContinuousClock.now < deadline
        }
        let punched = ContinuousClock.now
        let stoppedEarly = outcome.stoppedEarly || !outside.isEmpty || monitorLost != nil || ContinuousClock.now >= deadline
        endQMPPause(guest, qmp: &qmp, outside: outside, monitorLost: monitorLost, journal: journal)
        qmp.close()
        recordPause(guest, start: start, suspended: suspended, punched: punched, wallStart: wallStart, outcome: outcome, stoppedEarly: stoppedEarly)
    }

    /// Ends our pause, on the connection that made it: `cont`, unless the pause is no longer
    /// ours. After an event from QEMU during the pause, every event is read and the state
    /// asked first: a RESUME since our stop means someone else ended our pause (whatever
    /// holds the guest now is theirs), and a guest no longer paused by a client is not ours
    /// to resume.
    private func endQMPPause(
        _ guest: TrackedGuest, qmp: inout QMPConnection, outside first: [QMPEvent], monitorLost: QMPError?, journal: PauseJournal
    ) {
        let name = guest.identity.name
        do {
            if let monitorLost { throw monitorLost }
            if !first.isEmpty {
                let outside = first + (try Self.drainEvents(&qmp))
                deliver(outside, of: guest)
                let now = try qmp.queryStatus(timeout: Self.contTimeout)
                if outside.contains(where: { $0.name == "RESUME" }) || now.status != .paused {
                    logger.warning("guest \(name): \(outside.map(\.name).joined(separator: ", ")) during our pause (QEMU now \(now.status)); punching stopped, not resuming it")
                    clearJournal(guest, journal)
                    return
                }
                logger.warning("guest \(name): QEMU sent \(outside.map(\.name).joined(separator: ", ")) during our pause; punching stopped; ending our pause")
            }
            // The pause lasts until QEMU runs the command whatever we wait: wait enough.
            try qmp.cont(timeout: Self.contTimeout)
            deliver(qmp.takeEvents(), of: guest)
            clearJournal(guest, journal)
        } catch {
            logger.critical("guest \(name): ending our pause over QMP failed: \(error); retrying with backoff over a new connection")
            awaitResume(guest, call: nil, failure: "cont over QMP failed: \(error)")
        }
    }

    /// A `stop` that failed. Refused by QEMU: nothing was paused. Not answered in time (QEMU
    /// drains block I/O before it replies): the stop may still come, so the answer is waited
    /// for on the same connection, where QEMU answers in order; a pause it made is ended at
    /// once. With no answer at all (QEMU hangs), the journal holds the pause for the retries.
    private func stopFailed(_ guest: TrackedGuest, _ error: QMPError, qmp: inout QMPConnection, journal: PauseJournal) {
        let name = guest.identity.name
        if case .commandFailed = error {
            logger.warning("guest \(name): QEMU refused stop: \(error); nothing paused")
            clearJournal(guest, journal)
            return
        }
        logger.critical("guest \(name): stop over QMP: \(error); waiting for QEMU to answer on the same connection")
        do {
            let status = try qmp.queryStatus(timeout: Self.lateStopTimeout)
            deliver(qmp.takeEvents(), of: guest)
            guard status.status == .paused else {
                logger.warning("guest \(name): QEMU is \(status.status) after a late stop; nothing to end")
                clearJournal(guest, journal)
                return
            }
            try qmp.cont(timeout: Self.contTimeout)
            logger.notice("guest \(name): resumed after a late stop; nothing punched")
            clearJournal(guest, journal)
        } catch {
            logger.critical("guest \(name): QEMU does not answer over QMP (\(error)); the journal keeps our pause, retried with backoff")
            awaitResume(guest, call: nil, failure: "stop over QMP failed: \(error)")
        }
    }

    /// Reads every event QEMU has sent, without waiting for more.
    static func drainEvents(_ qmp: inout QMPConnection) throws(QMPError) -> [QMPEvent] {
        var events: [QMPEvent] = []
        while true {
            let more = try qmp.readEvents(until: .now)
            if more.isEmpty { return events }
            events += more
        }
    }

    /// How long a `stop` that timed out is waited for still (the guest may be stopped meanwhile).
    static let lateStopTimeout: Duration = .seconds(30)

    /// How long `stop` may take: QEMU replies once block I/O is drained and flushed.
    static let stopTimeout: Duration = .seconds(10)

    /// How long `cont` is waited for before the retry path takes over.
    static let contTimeout: Duration = .seconds(5)

    /// How long reclaim waits for a guest whose QMP socket serves another client.
    static let monitorBusyBackoff: Duration = .seconds(5)

    /// The guest's monitor serves someone else: its pages wait, and reclaim says so.
    private func monitorBusy(_ guest: TrackedGuest, batch: [(region: Int, pages: [Int])], socket: String) {
        let now = ContinuousClock.now
        for (region, pages) in batch {
            for page in pages { guest.reclaimState.addPending(page: page, region: region, at: now) }
        }
        guest.reclaimState.backoffUntil = now + Self.monitorBusyBackoff
        let deferral = ReclaimDeferral(
            .monitorBusy,
            detail: "its QMP socket \(socket) serves another client (QEMU serves one at a time); trying again in \(Self.monitorBusyBackoff)")
        if guest.reclaimState.status.deferred?.reason != .monitorBusy {
            guest.reclaimState.status.countDeferral(.monitorBusy)
            logger.notice("guest \(guest.identity.name): reclaim waits: \(deferral.detail)")
        }
        guest.reclaimState.status.deferred = deferral
    }

    /// QEMU's events on our own connection, kept as libvirt's passthrough events are: what
    /// the guest saw of a pause comes from its STOP and RESUME timestamps.
    private func deliver(_ events: [QMPEvent], of guest: TrackedGuest) {
        for event in events {
            agent.deliver(QemuMonitorEvent(uuid: guest.uuid, name: event.name, timestamp: event.timestamp.secondsSinceEpoch))
        }
    }
}

import Glibc
import Foundation
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
/// 4. The pause is journalled (with the socket, the pid and its start time), then `stop`,
///    whose reply comes after QEMU has stopped the vCPUs, drained block I/O and stopped
///    vhost-user rings. The pause is ours only if our STOP event is there, stamped after
///    our command went out: `stop` on a guest someone else paused a moment before emits
///    nothing.
/// 5. Verify and punch within the budget, stopping at once at any event QEMU sends meanwhile
///    (another monitor's `cont`, a reset, a device removed).
/// 6. `cont`, unless someone else's RESUME already ended the pause; disconnect. A `cont` that
///    fails leaves the journal entry, retried with backoff over a new connection.
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
        guard QEMUGuestHandle.startTime(of: handle.pid) == handle.startTime else { return }

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
        deliver(qmp.takeEvents(), of: guest)
        let wallStart = Date().timeIntervalSince1970
        let start = ContinuousClock.now
        do {
            // Its reply comes once block I/O is drained: waited for, within a bound of its own.
            try qmp.stop(timeout: Self.stopTimeout)
        } catch {
            logger.critical("guest \(name): stop over QMP: \(error); ending the pause, if there is one of ours, over a new connection")
            awaitResume(guest, call: nil, failure: "stop over QMP failed: \(error)")
            return
        }
        let suspended = ContinuousClock.now
        let events = qmp.takeEvents()
        deliver(events, of: guest)
        guard events.contains(where: { $0.name == "STOP" && $0.timestamp.secondsSinceEpoch >= wallStart - PauseRecord.slack }) else {
            // Paused by someone else between our query-status and our stop: not ours.
            logger.warning("guest \(name): the pause is not ours (no STOP event of our stop: someone else paused it first); nothing punched, left as it is")
            try? journal.didResume(uuid: guest.identity.uuid)
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
        deliver(outside, of: guest)
        let stoppedEarly = outcome.stoppedEarly || !outside.isEmpty || monitorLost != nil || ContinuousClock.now >= deadline
        if outside.contains(where: { $0.name == "RESUME" }) {
            logger.warning("guest \(name): resumed by someone else during our pause; punching stopped, not resuming it")
            try? journal.didResume(uuid: guest.identity.uuid)
        } else {
            if !outside.isEmpty {
                logger.warning("guest \(name): QEMU sent \(outside.map(\.name).joined(separator: ", ")) during our pause; punching stopped; ending our pause")
            }
            do {
                guard monitorLost == nil else { throw monitorLost! }
                try qmp.cont(timeout: timeout)
                deliver(qmp.takeEvents(), of: guest)
                try? journal.didResume(uuid: guest.identity.uuid)
            } catch {
                logger.critical("guest \(name): cont over QMP failed: \(error); retrying with backoff over a new connection")
                awaitResume(guest, call: nil, failure: "cont over QMP failed: \(error)")
            }
        }
        qmp.close()
        recordPause(guest, start: start, suspended: suspended, punched: punched, wallStart: wallStart, outcome: outcome, stoppedEarly: stoppedEarly)
    }

    /// How long `stop` may take: QEMU replies once block I/O is drained and flushed.
    static let stopTimeout: Duration = .seconds(10)

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

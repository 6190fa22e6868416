import Foundation
import Glibc
import QEMUGuests
import QMP

/// Pauses a guest libvirt does not manage with QEMU's own `stop` and `cont`, over its QMP
/// server socket, in one connection for the whole pause.
///
/// QEMU serves one QMP client at a time: while samepaged holds the socket, a Proxmox `qm`
/// command (or anyone else on that socket) queues behind the pause instead of finding the guest
/// paused, and a monitor that does not greet in time serves someone else (``PauseTransportError/busy(_:)``).
/// Events come on the same connection, in order with the replies: QEMU emits `STOP` before it
/// answers `stop`, so a `stop` that paused the guest is known by its event at once, and `stop`
/// on a guest already stopped emits none. Any event read while the guest is in our pause is
/// someone else's doing (another monitor's `cont`, a reset, a device removed).
final class QMPPauseTransport: PauseTransport, @unchecked Sendable {
    private let handle: QEMUGuestHandle
    private let socket: String
    private let timeout: Duration
    private let deliver: @Sendable ([QMPEvent]) -> Void
    private var connection: QMPConnection?
    private var seen: [PauseEvent] = []
    private var callSent = false
    private var outsideSeen = false

    /// - Parameters:
    ///   - timeout: For connecting and each query.
    ///   - deliver: Where QEMU's events go besides the pause (what the guest saw of it is
    ///     measured from their timestamps).
    init?(handle: QEMUGuestHandle, timeout: Duration, deliver: @escaping @Sendable ([QMPEvent]) -> Void) {
        guard let socket = handle.qmpSocket, handle.journalTarget != nil else { return nil }
        self.handle = handle
        self.socket = socket
        self.timeout = timeout
        self.deliver = deliver
    }

    var journalTarget: PauseJournal.Target { .qmp(handle.journalTarget!) }
    var eventsAreOrderedWithReplies: Bool { true }
    var outstandingCall: (any PendingCall)? { nil }

    func open(deadline: ContinuousClock.Instant) throws(PauseTransportError) {
        guard (try? QEMUGuestHandle.startTime(of: handle.pid)) == handle.startTime else {
            throw .notApplicable("its QEMU \(handle.pid) has exited")
        }
        var qmp: QMPConnection
        do { qmp = try TrustedQMP.connect(handle, socket: socket, timeout: max(.zero, deadline - .now)) } catch {
            throw Self.transportError(error)
        }
        // The socket answers for this guest: not a QEMU that took its path since.
        let mismatch: String?
        do { mismatch = try Self.identityMismatch(&qmp, handle: handle, timeout: timeout) } catch { throw Self.transportError(error) }
        if let mismatch { throw .wrongPeer(mismatch) }
        connection = consume qmp
    }

    func markEvents() throws(PauseTransportError) {
        // Every event so far is read and set aside: one read from here on follows the mark.
        try withConnection { qmp throws(QMPError) in deliver(try Self.readAll(&qmp)) }
        seen = []
    }

    func observe(deadline: ContinuousClock.Instant) throws(PauseTransportError) -> PauseObservation {
        let timeout = max(.milliseconds(1), deadline - .now)
        return try withConnection { qmp throws(QMPError) in
            let status = try qmp.queryStatus(timeout: timeout)
            var observation = PauseObservation(state: Self.pauseState(status), run: "\(handle.pid)@\(handle.startTime)")
            if status.status == .running { observation.jobRunning = try Self.hasActiveJob(&qmp, timeout: timeout) }
            take(qmp.takeEvents())
            return observation
        }
    }

    func suspend(deadline: ContinuousClock.Instant) throws(PauseTransportError) {
        // Every event already here is someone else's (an operator's `stop` on another monitor
        // while we journalled): read it now, so that only what follows our `stop` on the wire
        // counts as ours. (A `stop` of theirs that QEMU runs between this read and ours still
        // cannot be told apart: its STOP then precedes our reply as our own would.)
        try withConnection { qmp throws(QMPError) in take(try Self.readAll(&qmp)) }
        callSent = true
        try withConnection { qmp throws(QMPError) in
            do throws(QMPError) {
                // Its reply comes once block I/O is drained.
                try qmp.stop(timeout: max(.milliseconds(1), deadline - .now))
            } catch {
                guard case .timedOut = error else { throw error }
                // Not answered in time: the stop may still come. QEMU answers in order on this
                // connection, so the answer to a query after it says when it has.
                _ = try qmp.queryStatus(timeout: Self.lateStopTimeout)
            }
            take(qmp.takeEvents())
        }
    }

    func resume(deadline: ContinuousClock.Instant) throws(PauseTransportError) {
        try withConnection { qmp throws(QMPError) in
            try qmp.cont(timeout: max(.milliseconds(1), deadline - .now))
            take(qmp.takeEvents())
        }
    }

    func events(sinceMarkWaitingForOwnSuspend ownSuspendBy: ContinuousClock.Instant?) throws(PauseTransportError) -> [PauseEvent] {
        try withConnection { qmp throws(QMPError) in take(try Self.readAll(&qmp)) }
        return seen
    }

    func outsideChangeSinceSuspend() -> Bool {
        guard !outsideSeen else { return true }
        do {
            try withConnection { qmp throws(QMPError) in take(try qmp.readEvents(until: .now)) }
        } catch {
            // The monitor is lost or misbehaves: nothing more can be known of the guest.
            outsideSeen = true
        }
        // Any event after our call but our own STOP.
        var ownStop = false
        for event in seen where !event.beforeOurCall {
            if event.kind == .suspended && !ownStop {
                ownStop = true
            } else {
                outsideSeen = true
            }
        }
        return outsideSeen
    }

    func close() { connection = nil }

    /// Every event QEMU has sent so far, oldest first, without waiting for more (the
    /// connection bounds how many: a flood is ``QMP/QMPError/flood(path:detail:)``).
    private static func readAll(_ qmp: inout QMPConnection) throws(QMPError) -> [QMPEvent] {
        var events = qmp.takeEvents()
        while true {
            let more = try qmp.readEvents(until: .now)
            if more.isEmpty { return events }
            events += more
        }
    }

    /// Keeps events read on the connection, in order, and hands them on.
    private func take(_ events: [QMPEvent]) {
        guard !events.isEmpty else { return }
        deliver(events)
        for event in events {
            let kind: PauseEvent.Kind = switch event.name {
            case "STOP": .suspended
            case "RESUME": .resumed
            default: .other(event.name)
            }
            seen.append(PauseEvent(kind: kind, beforeOurCall: !callSent))
        }
    }

    private func withConnection<Value>(_ body: (inout QMPConnection) throws(QMPError) -> Value) throws(PauseTransportError) -> Value {
        guard var qmp = connection.take() else { throw .lost("the QMP connection at \(socket) is closed") }
        let result: Result<Value, QMPError>
        do throws(QMPError) { result = .success(try body(&qmp)) } catch { result = .failure(error) }
        connection = consume qmp
        switch result {
        case .success(let value): return value
        case .failure(let error): throw Self.transportError(error)
        }
    }

    /// How long a `stop` that timed out is waited for still (the guest may be stopped meanwhile).
    static let lateStopTimeout: Duration = .seconds(30)

    static func transportError(_ error: QMPError) -> PauseTransportError {
        switch error {
        case .busy: .busy("\(error)")
        case .noServer: .unreachable("\(error)")
        case .timedOut: .timedOut("\(error)")
        case .commandFailed: .refused("\(error)")
        case .protocolViolation: .misbehaving("\(error)")
        case .closed, .system: .lost("\(error)")
        case .flood: .misbehaving("\(error)")
        case .untrustedPeer(_, let why): .wrongPeer(why)
        }
    }

    /// QEMU's run state in the pause's words.
    static func pauseState(_ status: QMPRunState) -> PauseState {
        switch status.status {
        case .running: .running
        case .paused: .pausedByClient
        case .inmigrate, .postmigrate, .finishMigrate, .saveVM, .restoreVM: .pausedForJob("\(status.status)")
        default: .other("QEMU \(status.status)")
        }
    }

    /// Whether a job (backup, mirror, ...) or a migration is running.
    static func hasActiveJob(_ qmp: inout QMPConnection, timeout: Duration) throws(QMPError) -> Bool {
        let jobs = try qmp.queryJobs(timeout: timeout)
        let migration = try qmp.queryMigrate(timeout: timeout)
        return jobs.contains(where: \.isActive) || migration.status.isInProgress
    }

    /// Whether the QEMU behind the socket is another guest than `handle` (its UUID, or for a
    /// guest without one its name, as QMP's `query-uuid` and `query-name` give them); nil
    /// when it is this one. A socket path can outlive its QEMU and be taken by another.
    static func identityMismatch(_ qmp: inout QMPConnection, handle: QEMUGuestHandle, timeout: Duration) throws(QMPError) -> String? {
        if handle.uuidDerived {
            let name = try qmp.queryName(timeout: timeout)
            guard let name, name != handle.name, handle.commandLine.name != nil else { return nil }
            return "its QMP socket \(handle.qmpSocket ?? "") answers for a guest named \(name), not \(handle.name)"
        }
        let uuid = try qmp.queryUUID(timeout: timeout)
        guard UUID(uuidString: uuid) != handle.uuid else { return nil }
        return "its QMP socket \(handle.qmpSocket ?? "") answers for the guest with UUID \(uuid), not \(handle.uuid.uuidString.lowercased())"
    }

    /// Ends one pause journalled for a guest outside libvirt, over its QMP socket, if the guest
    /// is still in it, and clears the entry: the same QEMU (pid and start time) answering for
    /// the same guest (its UUID, or its name), paused by a client (`paused`); any other state
    /// (an I/O error, a migration's end, a panic) is not ours. Throws (keeping the entry) when
    /// the monitor cannot be reached or does not answer: busy with another client, or QEMU hung.
    static func endJournalled(
        _ entry: PauseJournal.Entry, target: PauseJournal.QMPTarget, journal: PauseJournal, timeout: Duration
    ) throws(QMPError) -> PauseEnd {
        let startTime: UInt64?
        do { startTime = try QEMUGuestHandle.startTime(of: target.pid) } catch { throw .system(error) }
        guard startTime == target.startTime else {
            journal.clearAfterEnd(uuid: entry.uuid)
            return .gone
        }
        // Only a socket that is this QEMU's (its uid read now: the process is the one journalled).
        let uid: uid_t
        do { uid = try ProcessTrust.uids(pid: target.pid)[1] } catch { throw .system(error) }
        var qmp: QMPConnection
        do { qmp = try TrustedQMP.connect(socket: target.socket, pid: target.pid, uid: uid, timeout: timeout) } catch {
            guard case .untrustedPeer(_, let why) = error else { throw error }
            return .notOurs("\(why); resume it by hand if it is still paused, then remove its entry")
        }
        // The socket must answer for the guest that was paused: its path may have been taken.
        let uuid = try? qmp.queryUUID(timeout: timeout)
        let name = try? qmp.queryName(timeout: timeout)
        guard uuid.flatMap(UUID.init(uuidString:)) == UUID(uuidString: entry.uuid) || name == entry.name else {
            // Kept: the entry blocks nothing but this guest, and says so until resolved by hand.
            return .notOurs("its QMP socket \(target.socket) answers for another guest (UUID \(uuid ?? "unknown"), name \(name ?? "none")); resume it by hand if it is still paused, then remove its entry")
        }
        let status = try qmp.queryStatus(timeout: timeout)
        let outcome: PauseEnd
        switch status.status {
        case .running:
            outcome = .alreadyRunning
        case .paused:
            try qmp.cont(timeout: timeout)
            outcome = .resumed
        default:
            outcome = .notOurs("its QEMU is \(status.status), a state of QEMU's own")
        }
        journal.clearAfterEnd(uuid: entry.uuid)
        return outcome
    }
}

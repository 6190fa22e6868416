import Foundation
import Libvirt

/// Pauses a libvirt guest with libvirt's suspend and resume, which stop its vCPUs, drain its
/// block I/O and stop its vhost-user rings, and which libvirt records (`PAUSED_USER`).
///
/// libvirt has no per-call timeout: each call runs on ``BlockingThreads`` and is waited for
/// until the deadline; one that does not return keeps running (``outstandingCall``). libvirt
/// delivers the guest's lifecycle events on its event thread, to the agent, possibly after the
/// call that caused them returned: the events of a pause are counted from the agent's record
/// (``Agent/StateEvents``) at the mark and at our suspend call.
final class LibvirtPauseTransport: PauseTransport, @unchecked Sendable {
    private let connection: LibvirtConnection
    private let uuid: UUID
    private let domainID: UInt32?
    private let events: @Sendable () -> Agent.StateEvents
    private var mark = Agent.StateEvents()
    private var atCall: Agent.StateEvents?
    private var callInstant: ContinuousClock.Instant?
    private(set) var outstandingCall: (any PendingCall)?

    /// - Parameter events: The guest's lifecycle events as the agent has them so far.
    init(connection: LibvirtConnection, uuid: UUID, domainID: UInt32?, events: @escaping @Sendable () -> Agent.StateEvents) {
        self.connection = connection
        self.uuid = uuid
        self.domainID = domainID
        self.events = events
    }

    var journalTarget: PauseJournal.Target { .libvirt(domainID: domainID) }
    var eventsAreOrderedWithReplies: Bool { false }

    func open(deadline: ContinuousClock.Instant) throws(PauseTransportError) {}

    func markEvents() throws(PauseTransportError) { mark = events() }

    func observe(deadline: ContinuousClock.Instant) throws(PauseTransportError) -> PauseObservation {
        let connection = self.connection, uuid = self.uuid
        let info = try call("reading its state", deadline: deadline) { () throws(LibvirtError) in try connection.domainInfo(uuid: uuid) }
        var observation = PauseObservation(state: Self.pauseState(info), run: info.id.map { "domain \($0)" })
        if info.state == .running {
            // Immediately before a suspend: a job that began since the last reconcile is seen.
            observation.jobRunning = try call("asking for jobs", deadline: deadline) { () throws(LibvirtError) in
                try connection.hasActiveJob(uuid: uuid)
            }
        }
        return observation
    }

    func suspend(deadline: ContinuousClock.Instant) throws(PauseTransportError) {
        atCall = events()
        callInstant = .now
        let connection = self.connection, uuid = self.uuid
        try call("suspend", deadline: deadline) { () throws(LibvirtError) in try connection.suspend(uuid: uuid) }
    }

    func resume(deadline: ContinuousClock.Instant) throws(PauseTransportError) {
        let connection = self.connection, uuid = self.uuid
        try call("resume", deadline: deadline) { () throws(LibvirtError) in try connection.resume(uuid: uuid) }
    }

    func events(sinceMarkWaitingForOwnSuspend ownSuspendBy: ContinuousClock.Instant?) throws(PauseTransportError) -> [PauseEvent] {
        guard let atCall else { return [] }
        var now = events()
        if let ownSuspendBy {
            while now.suspendedCount <= atCall.suspendedCount && ContinuousClock.now < ownSuspendBy {
                usleep(1_000)
                now = events()
            }
        }
        var found: [PauseEvent] = []
        // Before our call: a suspend not undone by a resume before our call.
        let suspendedBefore = atCall.suspendedCount > mark.suspendedCount
        let resumedAfterIt = atCall.resumedCount > mark.resumedCount
            && (atCall.resumed.flatMap { resumed in atCall.suspended.map { resumed >= $0 } } ?? false)
        if suspendedBefore && !resumedAfterIt { found.append(PauseEvent(kind: .suspended, beforeOurCall: true)) }
        if now.suspendedCount > atCall.suspendedCount { found.append(PauseEvent(kind: .suspended, beforeOurCall: false)) }
        if now.resumedCount > atCall.resumedCount { found.append(PauseEvent(kind: .resumed, beforeOurCall: false)) }
        if let other = now.other, let callInstant, other >= callInstant {
            found.append(PauseEvent(kind: .other("a lifecycle event"), beforeOurCall: false))
        }
        return found
    }

    func outsideChangeSinceSuspend() -> Bool {
        guard let atCall, let callInstant else { return false }
        let now = events()
        if now.resumedCount > atCall.resumedCount { return true }
        if let other = now.other, other >= callInstant { return true }
        return false
    }

    func close() {}

    /// The suspended and resumed event counts the pause will have caused once libvirt has
    /// delivered them: the next pause of the guest waits for them (or a while), so that a late
    /// event of this pause is never taken for someone else's.
    func eventCountsAfterPause(ended: Bool) -> (suspended: Int, resumed: Int)? {
        guard let atCall else { return nil }
        return (atCall.suspendedCount + 1, atCall.resumedCount + (ended ? 1 : 0))
    }

    /// libvirt's state and reason in the pause's words.
    static func pauseState(_ info: DomainInfo) -> PauseState {
        switch info.state {
        case .running: return .running
        case .paused:
            switch info.pausedReason {
            case .user?: return .pausedByClient
            case .migration?, .snapshot?, .save?, .dump?, .postcopy?:
                return .pausedForJob(info.pausedReason!.description)
            case let reason?: return .other("paused (\(reason))")
            case nil: return .other("paused (unknown reason)")
            }
        default: return .other("\(info.state)")
        }
    }

    /// Runs a libvirt call on a blocking thread, waited for until `deadline`.
    private func call<Value: Sendable>(
        _ what: String, deadline: ContinuousClock.Instant, _ body: @escaping @Sendable () throws(LibvirtError) -> Value
    ) throws(PauseTransportError) -> Value {
        let pending = LibvirtCall(body)
        let timeout = deadline - .now
        switch pending.wait(timeout) {
        case .success(let value)?:
            return value
        case .failure(let error)?:
            if error.isOperationInvalid || error.isNoDomain { throw .notApplicable("\(what): \(error)") }
            if error.isConnectionFailure { throw .lost("\(what) failed on the connection: \(error)") }
            throw .refused("\(what): \(error)")
        case nil:
            outstandingCall = pending
            throw .timedOut("\(what) did not return within \(timeout.rounded())")
        }
    }
}

extension Duration {
    /// To the millisecond, for messages.
    fileprivate func rounded() -> Duration { .milliseconds(Int64((inSeconds * 1000).rounded())) }
}

/// What ending a journalled pause did.
enum PauseEnd: CustomStringConvertible, Sendable {
    case resumed, alreadyRunning, gone
    /// The guest is paused, but not in our pause: left alone.
    case notOurs(String)

    var description: String {
        switch self {
        case .resumed: "resumed (paused by samepaged)"
        case .alreadyRunning: "not paused any more; nothing to resume"
        case .gone: "gone; nothing to resume"
        case .notOurs(let why): "left paused: \(why)"
        }
    }
}

extension LibvirtPauseTransport {
    /// Ends one journalled pause if the guest is still in it, and clears the entry: the guest is
    /// resumed only when it runs the same QEMU as when it was paused (domain id) and is paused
    /// by a client (`PAUSED_USER`); any other pause (an I/O error, a migration, a new QEMU) is
    /// not ours and is left as it is. Throws (keeping the entry) only when libvirt cannot answer.
    static func endJournalled(
        _ entry: PauseJournal.Entry, domainID: UInt32?, connection: LibvirtConnection, journal: PauseJournal
    ) throws(LibvirtError) -> PauseEnd {
        guard let uuid = UUID(uuidString: entry.uuid) else {
            journal.clearAfterEnd(uuid: entry.uuid)
            return .gone
        }
        let outcome: PauseEnd
        do {
            let info = try connection.domainInfo(uuid: uuid)
            if info.state != .paused {
                outcome = .alreadyRunning
            } else if info.pausedReason != .user {
                outcome = .notOurs("paused for another reason (\(info.pausedReason.map(\.description) ?? "unknown"))")
            } else if let domainID, info.id != domainID {
                outcome = .notOurs("a new QEMU run (domain id \(info.id.map(String.init) ?? "none"), paused one was \(domainID))")
            } else {
                do {
                    try connection.resume(uuid: uuid)
                    outcome = .resumed
                } catch where error.isOperationInvalid {
                    outcome = .alreadyRunning
                }
            }
        } catch where error.isNoDomain {
            outcome = .gone
        }
        journal.clearAfterEnd(uuid: entry.uuid)
        return outcome
    }
}

import Foundation

// # One pause protocol, many ways to stop a guest
//
// A pause is the one moment Samepage changes a guest: it stops the guest, verifies pages are
// still zero and punches them out of the backend, and starts the guest again. What the pause
// must guarantee (it is ours alone, it is bounded, it always ends) does not depend on how the
// guest is stopped; how it is stopped does: libvirt's suspend and resume for libvirt's guests,
// QEMU's own `stop` and `cont` over its QMP socket for guests outside libvirt, tomorrow Cloud
// Hypervisor's API socket. So the protocol is written once (``PauseSession``) over a
// ``PauseTransport``, and each way of stopping a guest is one type that answers a few
// questions in the agent's words: what state is the guest in, is a host job running, stop
// it, start it, and what happened to it since a point in time.
//
// Every call of a transport blocks and runs on a pause thread (never the agent's thread,
// never Swift's cooperative pool), and every call has an absolute deadline that incoming data
// cannot extend: a slow or hostile peer costs its own guest a deferral, never the others
// their scan.

/// A guest's run state as a pause needs to know it, whoever reports it.
enum PauseState: Equatable, Sendable, CustomStringConvertible {
    case running
    /// Paused by a client's request (libvirt's `PAUSED_USER`, QMP's `paused`): the only state
    /// a pause of ours leaves a guest in.
    case pausedByClient
    /// Paused for a host job (migration, snapshot, save, dump): what libvirt records when a
    /// suspend lands while such a job runs.
    case pausedForJob(String)
    /// Paused or stopped for a reason that is not a client's (an I/O error, the watchdog, a
    /// panic, shut off).
    case other(String)

    var description: String {
        switch self {
        case .running: "running"
        case .pausedByClient: "paused by a client"
        case .pausedForJob(let job): "paused for a job (\(job))"
        case .other(let why): why
        }
    }
}

/// What a transport reports of the guest at one moment.
struct PauseObservation: Equatable, Sendable {
    var state: PauseState
    /// Which run of its QEMU this is (libvirt's domain id; QEMU's pid and start time): a change
    /// means a new QEMU, which is never in our pause.
    var run: String?
    /// Whether a host job (migration, snapshot, backup, dump, save) is running.
    var jobRunning = false
}

/// A lifecycle event of the guest, as the transport saw it: its kind and whether it happened
/// before our suspend call was made.
struct PauseEvent: Equatable, Sendable {
    enum Kind: Equatable, Sendable {
        case suspended, resumed
        /// Anything else that changes the guest under a pause: a reset, a device added or
        /// removed, a stop, a crash. Named for the log.
        case other(String)
    }
    var kind: Kind
    /// True when it was seen before our suspend call went out (someone else's).
    var beforeOurCall: Bool
}

/// How a transport call failed.
enum PauseTransportError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The peer serves someone else right now (QMP serves one client at a time): try later.
    case busy(String)
    /// The peer cannot be reached or does not answer to who it should be.
    case unreachable(String)
    /// The peer answers for another guest (a socket path taken by another QEMU).
    case wrongPeer(String)
    /// The peer flooded us (events, blank lines, oversized messages) or broke the protocol.
    case misbehaving(String)
    /// The peer refused the call: nothing changed.
    case refused(String)
    /// The call did not return by its deadline; it may still take effect.
    case timedOut(String)
    /// The call's answer was lost (the connection broke): it may have taken effect.
    case lost(String)
    /// The guest is not there, or not in a state the call applies to (resume of a running guest).
    case notApplicable(String)

    var description: String {
        switch self {
        case .busy(let why), .unreachable(let why), .wrongPeer(let why), .misbehaving(let why), .refused(let why), .timedOut(let why),
            .lost(let why), .notApplicable(let why):
            why
        }
    }
}

/// How one kind of hypervisor control stops and starts a guest, for ``PauseSession``.
///
/// A transport is made for one guest and one pause, on the agent's thread, and then used only
/// on that pause's thread. Every call blocks for at most the time until `deadline`.
protocol PauseTransport: AnyObject, Sendable {
    /// The transport's own record of how to find this pause again (the journal's entry names it).
    var journalTarget: PauseJournal.Target { get }

    /// Whether the transport's events arrive in order with its replies (QMP: QEMU emits `STOP`
    /// before it answers `stop`), so that a suspend that paused the guest is known by its
    /// event at once. libvirt delivers events on another thread, possibly late.
    var eventsAreOrderedWithReplies: Bool { get }

    /// Connects if it needs to, and checks that the peer is this guest's.
    func open(deadline: ContinuousClock.Instant) throws(PauseTransportError)

    /// Marks the point from which ``events(sinceMarkWaitingForOwnSuspend:)`` counts.
    func markEvents() throws(PauseTransportError)

    /// The guest's state, its QEMU run and whether a host job is running.
    func observe(deadline: ContinuousClock.Instant) throws(PauseTransportError) -> PauseObservation

    /// Stops the guest's vCPUs, block I/O and vhost-user rings (libvirt's suspend, QMP's
    /// `stop`). The moment the call goes out counts as "our call" for events.
    func suspend(deadline: ContinuousClock.Instant) throws(PauseTransportError)

    /// Starts the guest again.
    func resume(deadline: ContinuousClock.Instant) throws(PauseTransportError)

    /// The events since ``markEvents()``, oldest first. With `ownSuspendBy`, waits until then at
    /// most for a suspended event after our call when none has been seen yet (libvirt delivers
    /// late).
    func events(sinceMarkWaitingForOwnSuspend ownSuspendBy: ContinuousClock.Instant?) throws(PauseTransportError) -> [PauseEvent]

    /// Whether anything happened to the guest since our suspend other than our own suspend:
    /// asked before every run of pages punched, so it must be cheap and must not wait.
    func outsideChangeSinceSuspend() -> Bool

    /// A suspend or resume of this pause that did not return by its deadline and may still
    /// take effect: the retries wait for it before they read the state.
    var outstandingCall: (any PendingCall)? { get }

    /// Closes what the pause opened (QMP's socket, which frees QEMU's monitor).
    func close()

    /// The suspended and resumed event counts the pause will have caused once they are all
    /// delivered (``PauseTransport/eventCountsAfterPause(ended:)-extension``).
    func eventCountsAfterPause(ended: Bool) -> (suspended: Int, resumed: Int)?
}

extension PauseTransport {
    /// The suspended and resumed event counts a pause will have caused once they are all
    /// delivered, for transports whose events come late (libvirt): the next pause waits for
    /// them. nil for transports whose events come in order with the replies.
    func eventCountsAfterPause(ended: Bool) -> (suspended: Int, resumed: Int)? { nil }
}

import Glibc
import Foundation
import GuestMemory
import KernelKSM
import Libvirt
import Logging
import SamepageCore
import SamepageModel
import Synchronization

/// How the agent is set up.
public struct AgentConfiguration: Sendable {
    /// The libvirt URI to follow guests on.
    public var uri: String = HostDefaults.libvirtURI
    /// The engine's knobs at start.
    public var tunables = Tunables.daemonDefaults
    /// Whether to scan at start (`run`).
    public var run: RunMode = .merge
    /// The policy of each guest; asked when a guest is found and on ``Agent/reloadPolicies()``.
    /// The second argument is the guest's Proxmox VE VM id (nil for other guests): its
    /// `VMID.toml` comes before its `NAME.toml`.
    public var policy: @Sendable (GuestIdentity, Int?) -> GuestPolicy = { _, _ in GuestPolicy() }
    /// How often the guest list is re-read from libvirt even without events.
    public var reconcileInterval: Duration = .seconds(5)
    /// Where libvirt's QEMU driver keeps `NAME.pid`.
    public var libvirtRunDirectory = "/run/libvirt/qemu"
    /// Longest wait between reconnection attempts while libvirtd is unreachable.
    public var maximumReconnectDelay: Duration = .seconds(30)
    /// The journal of guests paused for reclaim; nil disables reclaim altogether.
    public var pauseJournal: String? = PauseJournal.defaultPath
    /// A host-wide cap on bytes held back by reclaim (pages reclaimed and not refaulted);
    /// 0 = unlimited.
    public var reclaimMaxBytes = 0
    /// A confirmed zero page waits at most this long for a pause (fewer than
    /// ``reclaimBatchMinimum`` pending pages wait until then).
    public var reclaimDelay: Duration = .seconds(2)
    /// Pending zero pages that make a guest worth pausing at once.
    public var reclaimBatchMinimum = 256
    /// How long a libvirt call of a pause (state, suspend, resume) is waited for. A call not
    /// back in time keeps running; the pause is then ended as soon as libvirtd answers.
    public var libvirtCallTimeout: Duration = .seconds(2)
    /// Reclaim waits while the host's CPU pressure (`/proc/pressure/cpu`, the `some` share
    /// over the last second or ten) is over this many percent; 100 never waits.
    public var reclaimMaxCPUPressure = 10.0
    /// The pausing thread's nice value during a pause; nil leaves it as it is.
    public var pauseThreadNice: Int32?
    /// The kernel's own KSM: when `enabled`, samepaged governs ksmd (see `KernelKSMGovernor`).
    public var kernelKSM = KernelKSMConfiguration()
    /// QEMU guests outside libvirt (Proxmox VE, plain QEMU): found in /proc, paused over QMP.
    public var qemuGuests = QEMUGuestsConfiguration()
    /// Where proc is mounted (a fake tree in tests of discovery).
    public var procRoot = "/proc"
    /// Where the host's ksmd settings are kept while samepaged governs ksmd.
    public var kernelKSMSaved = HostDefaults.kernelKSMSaved
    /// ksmd's sysfs directory (a fake one in tests).
    public var kernelKSMRoot = "/sys/kernel/mm/ksm"
    /// Told of every reclaim pause once it is recorded (QEMU's events give what the guest saw
    /// of it, a moment after it ended), on the agent's thread (the Prometheus
    /// histogram records them here); must return quickly.
    public var pauseObserver: (@Sendable (ReclaimPause) -> Void)?

    public init() {}
}

/// The host agent's core: follows libvirt's guests, maps their RAM backends and runs the
/// merging engine over them, on one thread of its own.
///
/// Everything that blocks (libvirt calls, reads of guest RAM) happens on that thread, never on
/// Swift's cooperative pool. Other threads talk to it through a lock: they read
/// ``snapshot`` and post requests, which the thread applies between batches.
public final class Agent: Sendable {
    public let configuration: AgentConfiguration
    let logger: Logger
    private let shared = Mutex(Shared())

    struct Shared: ~Copyable {
        var snapshot = AgentSnapshot()
        var events: [DomainEventNotification] = []
        var connectionClosed = false
        var requests: [Request] = []
        var stopping = false
        var running = false
        /// The knobs as last set: those asked for, even before the thread applied them, with
        /// the advisor's `pages_to_scan` as the thread last settled it.
        var tunables = Tunables.daemonDefaults
        /// The `[kernel_ksm]` settings as last asked for.
        var kernelKSM = KernelKSMConfiguration()
        /// When the latest lifecycle events of each guest arrived: how the agent tells its
        /// own pause from someone else's, and sees an outside resume during a batch.
        var stateEvents: [UUID: StateEvents] = [:]
        /// Each guest's latest QEMU monitor events (STOP, RESUME), with QEMU's timestamps.
        var monitorEvents: [UUID: [GuestMonitorEvent]] = [:]
        var exit: AgentExit?
        var exitWaiters: [CheckedContinuation<AgentExit, Never>] = []
    }

    /// When the latest lifecycle events of a guest were delivered to the agent.
    struct StateEvents: Sendable {
        /// Suspended and resumed events delivered so far.
        var suspendedCount = 0
        var resumedCount = 0
        var suspended: ContinuousClock.Instant?
        var resumed: ContinuousClock.Instant?
        /// Started, stopped, crashed.
        var other: ContinuousClock.Instant?
    }

    enum Request: Sendable {
        case tunables(Tunables)
        case run(RunMode)
        case reloadPolicies
        case refresh
        case sharing(Reply<SharingMatrix>)
        case kernelKSM(KernelKSMConfiguration, Reply<Result<KernelKSMStatus, KernelKSMRefusal>>)

        var isTunables: Bool {
            if case .tunables = self { true } else { false }
        }
    }

    /// Where the agent's thread leaves an answer (the sharing matrix, ksmd's new state) for
    /// the thread that asked, which waits on `done`.
    final class Reply<Value: Sendable>: Sendable {
        let result = Mutex<Value?>(nil)
        let done = DispatchSemaphore(value: 0)

        func send(_ value: Value) {
            result.withLock { $0 = value }
            done.signal()
        }

        /// The answer, or nil when none came within `timeout`.
        func wait(_ timeout: Duration) -> Value? {
            guard done.wait(timeout: .now() + timeout.inSeconds) == .success else { return nil }
            return result.withLock { $0 }
        }
    }

    public init(configuration: AgentConfiguration, logger: Logger = Logger(label: "samepage.agent")) {
        self.configuration = configuration
        self.logger = logger
        shared.withLock {
            $0.snapshot.tunables = configuration.tunables
            $0.tunables = configuration.tunables
            $0.snapshot.run = configuration.run
            $0.kernelKSM = configuration.kernelKSM
        }
    }

    /// The latest published state. Published after every reconcile and at least every 250 ms
    /// of scanning.
    public var snapshot: AgentSnapshot { shared.withLock { $0.snapshot } }

    /// Starts the agent's thread. Returns at once. A daemon runs the agent as a service
    /// (``run()``); tools call this and ``stop(timeout:)``.
    public func start() {
        let alreadyRunning = shared.withLock { state in
            defer { state.running = true }
            return state.running
        }
        guard !alreadyRunning else { return }
        let thread = Thread { [self] in self.runOnThisThread() }
        thread.name = "samepage-agent"
        thread.start()
    }

    /// Asks the thread to stop; it ends any pause it holds, releases every guest's mappings,
    /// then exits. Returns at once; ``exited()`` says when it is done.
    public func requestStop() {
        shared.withLock { $0.stopping = true }
    }

    /// Waits, without blocking a thread, until the agent's thread has ended, and says how.
    /// An agent that ends without ``requestStop()`` has failed: the daemon must stop too.
    public func exited() async -> AgentExit {
        await withCheckedContinuation { continuation in
            let exit: AgentExit? = shared.withLock { state in
                if let exit = state.exit { return exit }
                state.exitWaiters.append(continuation)
                return nil
            }
            if let exit { continuation.resume(returning: exit) }
        }
    }

    /// Asks the thread to stop, as ``requestStop()``, and waits for that up to `timeout`
    /// (blocking: for command-line tools, not the cooperative pool).
    @available(*, noasync, message: "polls until the agent's thread ends; use run() in a service group, or exited()")
    public func stop(timeout: Duration = .seconds(10)) {
        requestStop()
        let deadline = ContinuousClock.now + timeout
        while shared.withLock({ $0.running }) && ContinuousClock.now < deadline {
            usleep(10_000)
        }
    }

    /// Changes the engine's knobs before its next batch.
    ///
    /// While the scan-time advisor is on and stays on, `pages_to_scan` is the advisor's and
    /// the value given is ignored (``Tunables/applying(_:)``); a change of `advisor_mode`
    /// starts the advisor afresh from the `pages_to_scan` given (see
    /// ``Tunables/setAdvisorMode(_:pagesToScanWhenOff:)``, which computes it).
    public func setTunables(_ tunables: Tunables) throws(TunableError) {
        try tunables.validate()
        shared.withLock { state in
            state.requests.append(.tunables(tunables))
            state.tunables = state.tunables.applying(tunables)
        }
    }

    /// The knobs as last set: requested changes count even before the thread applied them,
    /// so two quick `tune` requests build on each other; `pages_to_scan` is the advisor's
    /// latest while it is on.
    public var currentTunables: Tunables {
        shared.withLock { $0.tunables }
    }

    /// `run`: stop, merge, or unmerge everything.
    public func setRun(_ mode: RunMode) { post(.run(mode)) }

    /// Asks every guest's policy again and applies changes.
    public func reloadPolicies() { post(.reloadPolicies) }

    /// Re-reads the guest list from libvirt now.
    public func refresh() { post(.refresh) }

    /// The stable nodes shared between each pair of mapped guests, computed by the agent's
    /// thread between two batches (one walk over all rmap items). Nil if the thread did not
    /// answer within `timeout`.
    @available(*, noasync, message: "waits for the agent's thread; call it from a thread of your own")
    public func sharingMatrix(timeout: Duration = .seconds(10)) -> SharingMatrix? {
        let reply = Reply<SharingMatrix>()
        post(.sharing(reply))
        return reply.wait(timeout)
    }

    /// Governs ksmd as `configuration` asks, from the agent's thread between two batches:
    /// takes hold of ksmd (saving the host's settings) when it becomes enabled, changes its
    /// settings while it stays so, and puts the host's settings back when it no longer is.
    /// Returns the kernel's KSM as it is then, or why that could not be done (the kernel has
    /// no KSM, the host's settings cannot be saved, the thread did not answer in `timeout`);
    /// what was in force stays so then.
    @available(*, noasync, message: "waits for the agent's thread; call it from a thread of your own")
    public func setKernelKSM(
        _ configuration: KernelKSMConfiguration, timeout: Duration = .seconds(30)
    ) -> Result<KernelKSMStatus, KernelKSMRefusal> {
        let reply = Reply<Result<KernelKSMStatus, KernelKSMRefusal>>()
        shared.withLock { state in
            state.requests.append(.kernelKSM(configuration, reply))
            state.kernelKSM = configuration
        }
        return reply.wait(timeout) ?? .failure(KernelKSMRefusal("the agent did not answer within \(timeout); it applies the change when it can"))
    }

    /// The `[kernel_ksm]` settings as last set (at start, by a reload, by `tune --kernel-…`):
    /// changes count once asked, so two quick requests build on each other.
    public var currentKernelKSM: KernelKSMConfiguration {
        shared.withLock { $0.kernelKSM }
    }

    private func post(_ request: Request) { shared.withLock { $0.requests.append(request) } }

    /// Runs the agent on the calling thread until it is asked to stop. Blocking.
    func runOnThisThread() {
        shared.withLock { $0.running = true }
        let worker: Worker
        do {
            worker = try Worker(agent: self)
        } catch {
            logger.critical("cannot start the agent: \(error)")
            finish(.failed("cannot start the agent: \(error)"))
            return
        }
        worker.loop()
        finish(shared.withLock { $0.stopping } ? .stopped : .failed("the agent's loop ended unasked"))
    }

    private func finish(_ exit: AgentExit) {
        let waiters = shared.withLock { state in
            state.running = false
            state.exit = exit
            defer { state.exitWaiters = [] }
            return state.exitWaiters
        }
        for waiter in waiters { waiter.resume(returning: exit) }
    }

    // MARK: For the worker

    func takeInbox() -> (events: [DomainEventNotification], closed: Bool, requests: [Request], stopping: Bool) {
        shared.withLock { state in
            defer {
                state.events = []
                state.requests = []
                state.connectionClosed = false
            }
            return (state.events, state.connectionClosed, state.requests, state.stopping)
        }
    }

    func publish(_ snapshot: AgentSnapshot) { shared.withLock { $0.snapshot = snapshot } }

    /// The thread's knobs, once it applied every request or the advisor changed
    /// `pages_to_scan`, become ``currentTunables``; unless another change is queued, which
    /// is then the newer word.
    func settle(_ tunables: Tunables) {
        shared.withLock { state in
            if !state.requests.contains(where: \.isTunables) { state.tunables = tunables }
        }
    }

    func deliver(_ event: DomainEventNotification) {
        let now = ContinuousClock.now
        shared.withLock { state in
            state.events.append(event)
            switch event.event {
            case .suspended:
                state.stateEvents[event.uuid, default: StateEvents()].suspended = now
                state.stateEvents[event.uuid, default: StateEvents()].suspendedCount += 1
            case .resumed:
                state.stateEvents[event.uuid, default: StateEvents()].resumed = now
                state.stateEvents[event.uuid, default: StateEvents()].resumedCount += 1
            // A device hot-plugged during a pause (a VFIO device pins and maps guest RAM at
            // once) stops the punching as an outside state change does.
            case .started, .stopped, .crashed, .migratedAway, .deviceAdded, .deviceRemoved:
                state.stateEvents[event.uuid, default: StateEvents()].other = now
            }
        }
    }

    /// How many QEMU monitor events are kept per guest: enough for a few pauses.
    static let monitorEventsKept = 16

    func deliver(_ event: GuestMonitorEvent) {
        shared.withLock { state in
            var events = state.monitorEvents[event.uuid, default: []]
            events.append(event)
            if events.count > Self.monitorEventsKept { events.removeFirst(events.count - Self.monitorEventsKept) }
            state.monitorEvents[event.uuid] = events
        }
    }

    /// The guest's latest QEMU monitor events, oldest first.
    func monitorEvents(of uuid: UUID) -> [GuestMonitorEvent] {
        shared.withLock { $0.monitorEvents[uuid] ?? [] }
    }

    /// When the latest lifecycle events of the guest were delivered.
    func stateEvents(of uuid: UUID) -> StateEvents {
        shared.withLock { $0.stateEvents[uuid] ?? StateEvents() }
    }

    /// Drops what was kept of a guest's events once it has left: the record does not outlive
    /// the guests the agent follows.
    func forgetStateEvents(of uuid: UUID) {
        shared.withLock {
            $0.stateEvents[uuid] = nil
            $0.monitorEvents[uuid] = nil
        }
    }

    /// Puts back the host's ksmd settings that a samepaged governing ksmd saved at
    /// `savedPath` and did not put back (it crashed); for `samepaged --resume-paused`.
    /// Returns whether there were any.
    public static func restoreKernelKSM(savedPath: String, root: String = "/sys/kernel/mm/ksm", logger: Logger) throws -> Bool {
        try KernelKSMGovernor.restoreSaved(path: savedPath, ksm: KernelKSM(root: root), logger: logger)
    }

    func connectionDidClose() { shared.withLock { $0.connectionClosed = true } }
}

/// Why the kernel's KSM could not be governed as asked.
public struct KernelKSMRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// How the agent's thread ended.
public enum AgentExit: Sendable, Equatable, CustomStringConvertible {
    /// As asked (``Agent/requestStop()``).
    case stopped
    /// On its own: the daemon cannot keep its promises and must stop.
    case failed(String)

    public var description: String {
        switch self {
        case .stopped: "stopped"
        case .failed(let why): "failed: \(why)"
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import GuestMemory
import Libvirt
import Logging
import SamepageCore
import SamepageModel
import Synchronization

/// How the agent is set up.
public struct AgentConfiguration: Sendable {
    /// The libvirt URI to follow guests on.
    public var uri: String = "qemu:///system"
    /// The engine's knobs at start.
    public var tunables = Tunables.daemonDefaults
    /// Whether to scan at start (`run`).
    public var run: RunMode = .merge
    /// The policy of each guest; asked when a guest is found and on ``Agent/reloadPolicies()``.
    public var policy: @Sendable (GuestIdentity) -> GuestPolicy = { _ in GuestPolicy() }
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
    /// Told of every reclaim pause as it ends, on the agent's thread (the Prometheus
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
        var pendingTunables: Tunables?
        /// When the latest lifecycle events of each guest arrived: how the agent tells its
        /// own pause from someone else's, and sees an outside resume during a batch.
        var stateEvents: [UUID: StateEvents] = [:]
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
        case sharing(SharingReply)
    }

    /// Where the agent's thread leaves the sharing matrix for the thread that asked.
    final class SharingReply: Sendable {
        let result = Mutex<SharingMatrix?>(nil)
        let done = DispatchSemaphore(value: 0)
    }

    public init(configuration: AgentConfiguration, logger: Logger = Logger(label: "samepage.agent")) {
        self.configuration = configuration
        self.logger = logger
        shared.withLock {
            $0.snapshot.tunables = configuration.tunables
            $0.snapshot.run = configuration.run
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
    public func setTunables(_ tunables: Tunables) throws(TunableError) {
        try tunables.validate()
        shared.withLock { state in
            state.requests.append(.tunables(tunables))
            state.pendingTunables = tunables
        }
    }

    /// The knobs as last set: requested changes count even before the thread applied them,
    /// so two quick `tune` requests build on each other.
    public var currentTunables: Tunables {
        shared.withLock { $0.pendingTunables ?? $0.snapshot.tunables }
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
        let reply = SharingReply()
        post(.sharing(reply))
        guard reply.done.wait(timeout: .now() + timeout.inSeconds) == .success else { return nil }
        return reply.result.withLock { $0 }
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
            case .started, .stopped, .crashed, .migratedAway: state.stateEvents[event.uuid, default: StateEvents()].other = now
            case .deviceAdded, .deviceRemoved: break
            }
        }
    }

    /// When the latest lifecycle events of the guest were delivered.
    func stateEvents(of uuid: UUID) -> StateEvents {
        shared.withLock { $0.stateEvents[uuid] ?? StateEvents() }
    }

    func connectionDidClose() { shared.withLock { $0.connectionClosed = true } }
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

/// A guest the agent knows, with its open backends and engine slots. Lives on the agent's
/// thread only.
final class TrackedGuest {
    var identity: GuestIdentity
    let uuid: UUID
    var domainID: UInt32?
    var state: DomainState
    var definition: DomainDefinition?
    var facts = GuestFacts()
    var policy = GuestPolicy()
    var process: QEMUProcess?
    var regions: [GuestRegion] = []
    var slots: [SlotID] = []
    /// The Unix socket paths of its vhost-user devices (from the XML and QEMU's command line).
    var vhostUserSockets: Set<String> = []
    var reason: String?
    /// Dropped after a failure: not mapped again until QEMU restarts (a new domain id).
    var failed = false

    /// Its zero-page reclaim: pending, reclaimed and refaulted pages, pause costs, backoffs.
    var reclaimState = ReclaimState()

    init(_ info: DomainInfo) {
        identity = GuestIdentity(name: info.name, uuid: info.uuid.uuidString.lowercased())
        uuid = info.uuid
        domainID = info.id
        state = info.state
    }

    var mapped: Bool { !slots.isEmpty }
}

/// The agent thread's state and loop.
final class Worker {
    let agent: Agent
    let engine: Engine
    var logger: Logger { agent.logger }
    var configuration: AgentConfiguration { agent.configuration }

    var connection: LibvirtConnection?
    var subscription: EventSubscription?
    var connectionError: String?
    var reconnectDelay: Duration = .milliseconds(500)
    var nextConnectAttempt = ContinuousClock.now
    var nextReconcile = ContinuousClock.now
    var lastPublish = ContinuousClock.now - .seconds(1)
    var reconciledOnce = false
    /// Pages scanned over the last seconds, for the published scan rate.
    var scanRate = RateWindow(span: .seconds(10))

    var guests: [UUID: TrackedGuest] = [:]
    var slotOwners: [SlotID: UUID] = [:]
    /// Reclaim totals of guests that are gone.
    var reclaimedByGoneGuests = ReclaimStatus()
    let journal: PauseJournal?
    /// Journal entries still to resume (from a previous run, or a failed resume).
    var unresumed: [PendingResume] = []
    /// `run unmerge` is allocating reclaimed ranges again.
    var repopulating = false
    /// Which processes map which backends: re-read only where processes are new or changed.
    let mappingIndex = ProcessMappingIndex()
    var lastMapperRefresh = ContinuousClock.now - .seconds(60)

    init(agent: Agent) throws {
        self.agent = agent
        engine = try Engine(tunables: agent.configuration.tunables)
        engine.run = agent.configuration.run
        journal = agent.configuration.pauseJournal.map(PauseJournal.init(path:))
        if let journal {
            unresumed = try journal.entries().map { PendingResume(entry: $0, fromEarlierRun: true) }
            if !unresumed.isEmpty {
                agent.logger.warning("\(unresumed.count) guest(s) paused by an earlier samepaged: resuming them once libvirt is reachable")
            }
        }
    }

    func loop() {
        while true {
            let inbox = agent.takeInbox()
            if inbox.stopping { break }
            var reconcileNow = false
            for request in inbox.requests {
                switch request {
                case .tunables(let tunables): try? engine.setTunables(tunables)
                case .run(let mode):
                    engine.run = mode
                    if mode == .unmerge { startRepopulating() }
                case .reloadPolicies: reloadPolicies()
                case .refresh: reconcileNow = true
                case .sharing(let reply):
                    reply.result.withLock { $0 = sharingMatrix() }
                    reply.done.signal()
                }
            }
            if inbox.closed { disconnect(reason: "libvirtd closed the connection") }
            if connection == nil && ContinuousClock.now >= nextConnectAttempt { connect() }
            for notification in inbox.events { handle(notification, reconcile: &reconcileNow) }
            if connection != nil && (reconcileNow || ContinuousClock.now >= nextReconcile) { reconcile() }
            releaseExitedGuests()

            if connection != nil && !unresumed.isEmpty { resumePending() }
            let report = engine.scanBatch()
            for zero in report.confirmedZeroPages { zeroPageConfirmed(slot: zero.slot, page: zero.page) }
            for failure in report.failures { slotFailed(failure) }
            reclaimIfDue()
            checkRefaults()
            repopulateStep()

            if ContinuousClock.now - lastPublish >= .milliseconds(250) { publish() }
            let idle = report.pagesScanned == 0
            let pause = idle ? max(engine.tunables.sleepMillisecs, 50) : engine.tunables.sleepMillisecs
            if pause > 0 { usleep(UInt32(pause) * 1000) }
        }
        finishPauses()
        for guest in guests.values { detach(guest, reason: "agent stopped") }
        guests = [:]
        subscription = nil
        connection = nil
        publish()
    }

    // MARK: libvirt

    func connect() {
        do {
            let connection = try LibvirtConnection(uri: configuration.uri)
            let agent = self.agent
            subscription = try connection.observeEvents({ agent.deliver($0) }, onClose: { _ in agent.connectionDidClose() })
            self.connection = connection
            if connectionError != nil { logger.notice("reconnected to libvirt at \(configuration.uri)") }
            connectionError = nil
            reconnectDelay = .milliseconds(500)
            nextReconcile = ContinuousClock.now
        } catch {
            let message = "cannot connect to libvirt at \(configuration.uri): \(error)"
            if connectionError != message { logger.error("\(message); retrying with backoff") }
            connectionError = message
            nextConnectAttempt = ContinuousClock.now + reconnectDelay
            reconnectDelay = min(reconnectDelay * 2, configuration.maximumReconnectDelay)
        }
        publish()
    }

    private func disconnect(reason: String) {
        guard connection != nil else { return }
        logger.error("lost libvirt connection: \(reason); guests stay mapped while their QEMU runs")
        subscription = nil
        connection = nil
        connectionError = reason
        nextConnectAttempt = ContinuousClock.now + reconnectDelay
        publish()
    }

    private func handle(_ notification: DomainEventNotification, reconcile: inout Bool) {
        logger.debug("event \(notification.event) for \(notification.name)")
        switch notification.event {
        case .stopped, .migratedAway:
            if let guest = guests.removeValue(forKey: notification.uuid) {
                detach(guest, reason: "guest stopped")
            }
        case .deviceAdded, .deviceRemoved:
            // Memory hotplug or unplug: map the guest again with its new regions.
            if let guest = guests.removeValue(forKey: notification.uuid) {
                detach(guest, reason: "device change")
            }
            reconcile = true
        case .started, .suspended, .resumed, .crashed:
            reconcile = true
        }
    }

    /// Makes the tracked guests match libvirt's active domains.
    private func reconcile() {
        guard let connection else { return }
        nextReconcile = ContinuousClock.now + configuration.reconcileInterval
        let domains: [DomainInfo]
        do {
            domains = try connection.activeDomains()
        } catch {
            if error.isConnectionFailure || !connection.isAlive {
                disconnect(reason: error.description)
            } else {
                logger.warning("listing guests: \(error)")
            }
            return
        }
        reconciledOnce = true
        let active = Set(domains.map(\.uuid))
        for (uuid, guest) in guests where !active.contains(uuid) {
            guests[uuid] = nil
            detach(guest, reason: "guest stopped")
        }
        for info in domains {
            if let guest = guests[info.uuid] {
                guest.state = info.state
                if guest.domainID != info.id {
                    // The same guest, started again.
                    guests[info.uuid] = nil
                    detach(guest, reason: "guest restarted")
                    attach(info, connection: connection)
                } else if guest.mapped {
                    if let job = try? connection.hasActiveJob(uuid: info.uuid) { guest.facts.activeJob = job }
                    refreshDefinition(guest, connection: connection)
                }
            } else {
                attach(info, connection: connection)
            }
        }
        let mapped = guests.values.filter(\.mapped)
        refreshMappers(mapped)
        for guest in mapped where guest.policy.mode.reclaims { _ = checkDMADescriptors(guest) }
        publish()
    }

    /// Re-reads a mapped guest's XML at every reconcile, not only on events (events are lost
    /// while libvirtd restarts): a device added since is seen within one interval. A changed
    /// RAM layout maps the guest again.
    private func refreshDefinition(_ guest: TrackedGuest, connection: LibvirtConnection) {
        guard let definition = try? connection.domainDefinition(uuid: guest.uuid) else {
            // Cannot tell what the guest has now: no reclaim until it can.
            guest.facts.definitionUnknown = true
            return
        }
        guest.facts.definitionUnknown = false
        guard definition != guest.definition else { return }
        if definition.ramRegions != guest.definition?.ramRegions {
            logger.info("guest \(guest.identity.name): RAM layout changed; mapping it again")
            unmap(guest)
            guest.definition = definition
            guest.facts = GuestFacts(definition, keepingProcessFactsOf: guest.facts)
            map(guest)
            return
        }
        guest.definition = definition
        guest.facts = GuestFacts(definition, keepingProcessFactsOf: guest.facts)
    }

    // MARK: Guests

    private func attach(_ info: DomainInfo, connection: LibvirtConnection) {
        let guest = TrackedGuest(info)
        guests[info.uuid] = guest
        guest.policy = configuration.policy(guest.identity)
        do {
            let definition = try connection.domainDefinition(uuid: info.uuid)
            guest.definition = definition
            guest.facts = GuestFacts(definition)
        } catch {
            guest.reason = "cannot read its domain XML: \(error)"
            logger.warning("guest \(info.name): \(guest.reason!)")
            return
        }
        guest.facts.activeJob = (try? connection.hasActiveJob(uuid: info.uuid)) ?? false
        if connection.isRemote {
            guest.reason = UnmappableReason.remoteConnection(uri: connection.uri).description
        } else if guest.policy.mode == .off {
            guest.reason = "policy mode is off"
        } else {
            map(guest)
        }
        if let reason = guest.reason {
            logger.info("guest \(info.name) not mapped: \(reason)")
        }
    }

    /// The socket paths a guest's vhost-user backends are reached on: those the XML names, and,
    /// when the XML has vhost-user devices, the vhost-user chardevs on QEMU's command line
    /// (where the socket of a virtiofsd libvirt started itself is found).
    static func vhostUserSockets(_ definition: DomainDefinition, commandLine: [String]?) -> Set<String> {
        var sockets = Set(definition.vhostUserDevices.compactMap(\.socketPath) + definition.virtiofsFilesystems.compactMap(\.socketPath))
        if !definition.vhostUserDevices.isEmpty || !definition.virtiofsFilesystems.isEmpty, let commandLine {
            sockets.formUnion(QEMUCommandLine.vhostUserSocketPaths(arguments: commandLine))
        }
        return sockets
    }

    /// Finds the processes besides QEMU (and us) that map each guest's RAM backends, in one
    /// pass over /proc, and sorts them into the guest's vhost-user backends and others. Run at
    /// map time and at every reconcile, so a process that maps a backend later keeps reclaim
    /// off within one reconcile interval.
    func refreshMappers(_ guests: [TrackedGuest]) {
        let files = Set(guests.flatMap { $0.regions.map(\.file) })
        let pass = mappingIndex.refresh()
        lastMapperRefresh = ContinuousClock.now
        let mappers = mappingIndex.processes(mappingAny: files)
        // A process that cannot be inspected might map any backend: it counts as a mapper of
        // every guest (reclaim fails closed), named with why.
        let unreadable = pass.unreadable.filter { $0.key != getpid() }.sorted { $0.key < $1.key }.map { pid, error in
            MapperProcess(pid: pid, command: "cannot inspect: \(error)")
        }
        var table: UnixSocketTable?
        var tableError: SystemError?
        for guest in guests {
            guard let qemu = guest.process?.pid else { continue }
            let others = Set(guest.regions.flatMap { mappers[$0.file] ?? [] }).subtracting([qemu, getpid()]).sorted()
            var backends: [pid_t: String] = [:]
            if !others.isEmpty && !guest.vhostUserSockets.isEmpty {
                if table == nil && tableError == nil {
                    do { table = try UnixSocketTable.current() } catch { tableError = error }
                }
                if let table {
                    backends = VhostUserBackends.identify(qemu: qemu, mappers: others, socketPaths: guest.vhostUserSockets, table: table)
                } else if let tableError {
                    logger.warning("guest \(guest.identity.name): cannot tell vhost-user backends from other mappers: \(tableError)")
                }
            }
            guest.facts.vhostUserBackends = others.compactMap { pid in
                backends[pid].map { MapperProcess(pid: pid, command: MapperProcess.command(of: pid), socket: $0) }
            }
            guest.facts.otherMappers = others.filter { backends[$0] == nil }.map { MapperProcess(pid: $0, command: MapperProcess.command(of: $0)) }
                + unreadable
        }
    }

    /// Opens the guest's RAM backends and puts them on the scan list.
    private func map(_ guest: TrackedGuest) {
        guard let definition = guest.definition else { return }
        do {
            let process = try QEMUProcess.libvirtGuest(
                name: guest.identity.name, uuid: guest.uuid, runDirectory: configuration.libvirtRunDirectory)
            let expected = definition.ramRegions.map { ExpectedRegion(backendID: $0.backendID, size: Int($0.sizeKiB) * 1024) }
            // Regions of guests whose zero pages may be reclaimed are opened read-write, for
            // fallocate; everything else read-only.
            guest.regions = try process.openRAMRegions(expecting: expected, access: Self.access(for: guest.policy.mode))
            guest.vhostUserSockets = Self.vhostUserSockets(definition, commandLine: try? process.commandLine())
            guest.process = consume process
            refreshMappers([guest])
        } catch {
            guest.regions = []
            guest.reason = error.description
            return
        }
        let group = guest.policy.trustGroup.map { engine.trustGroup(named: $0) } ?? engine.privateTrustGroup()
        for region in guest.regions {
            let options = SlotOptions(
                name: "\(guest.identity.name)/\(region.backendID)", trustGroup: group,
                merging: guest.policy.mode.merges, maxPages: guest.policy.maxPages)
            guard let slot = engine.addSlot(region, options: options) else {
                unmap(guest)
                guest.reason = "too many regions on the scan list"
                return
            }
            guest.slots.append(slot)
            slotOwners[slot] = guest.uuid
        }
        guest.reason = nil
        let kinds = Set(guest.regions.map(\.kind.description)).sorted().joined(separator: ", ")
        logger.info("guest \(guest.identity.name) mapped: \(guest.regions.count) region(s), \(kinds), \(guest.regions.reduce(0) { $0 + $1.size } >> 20) MiB")
    }

    /// How a guest's backends are opened in `mode`: read-write only where zero pages may be
    /// reclaimed (for fallocate), read-only everywhere else.
    static func access(for mode: PolicyMode) -> BackendAccess { mode.reclaims ? .readWrite : .readOnly }

    /// Takes the guest off the scan list and closes its backends, releasing its RAM.
    private func unmap(_ guest: TrackedGuest) {
        for slot in guest.slots {
            engine.removeSlot(slot)
            slotOwners[slot] = nil
        }
        guest.slots = []
        guest.regions = []
        guest.process = nil
        guest.reclaimState.pending = [:]
        guest.reclaimState.oldestPending = nil
        guest.reclaimState.held = [:]
        guest.reclaimState.hot = [:]
    }

    private func detach(_ guest: TrackedGuest, reason: String) {
        if guest.mapped { logger.info("guest \(guest.identity.name) released: \(reason)") }
        unmap(guest)
        var totals = guest.reclaimState.status
        totals.pendingPages = 0
        reclaimedByGoneGuests.add(totals)
        guest.reclaimState.status = ReclaimStatus()
    }

    /// QEMU exits are seen on its pidfd, even while libvirtd is down.
    private func releaseExitedGuests() {
        for (uuid, guest) in guests where guest.process?.hasExited ?? false {
            guests[uuid] = nil
            detach(guest, reason: "its QEMU exited")
        }
    }

    private func slotFailed(_ failure: SlotFailure) {
        guard let uuid = slotOwners[failure.slot], let guest = guests[uuid] else { return }
        slotOwners[failure.slot] = nil
        guest.slots.removeAll { $0 == failure.slot }
        logger.warning("guest \(guest.identity.name): dropped region \(failure.name): \(failure.reason)")
        unmap(guest)
        guest.failed = true
        guest.reason = "dropped: \(failure.reason)"
        publish()
    }

    private func reloadPolicies() {
        for guest in guests.values {
            let policy = configuration.policy(guest.identity)
            guard policy != guest.policy else { continue }
            let old = guest.policy
            guest.policy = policy
            logger.info("guest \(guest.identity.name): policy \(old.mode.rawValue) -> \(policy.mode.rawValue)")
            if policy.mode == .off {
                unmap(guest)
                guest.reason = "policy mode is off"
            } else if !guest.mapped {
                if !guest.failed {
                    guest.reason = nil
                    map(guest)
                }
            } else if guest.regions.contains(where: { $0.access != Self.access(for: policy.mode) }) {
                // Reclaim needs the backend open read-write, and nothing else may hold it so:
                // the guest is mapped again with the access its new mode needs, before any
                // pause could use it.
                unmap(guest)
                map(guest)
            } else {
                if !policy.mode.reclaims {
                    guest.reclaimState.pending = [:]
                    guest.reclaimState.oldestPending = nil
                }
                // A trust group removed puts the guest in a group of its own again.
                var group = engine.options(for: guest.slots[0])!.trustGroup
                if policy.trustGroup != old.trustGroup {
                    group = policy.trustGroup.map { engine.trustGroup(named: $0) } ?? engine.privateTrustGroup()
                }
                for slot in guest.slots {
                    var options = engine.options(for: slot)!
                    options.trustGroup = group
                    options.merging = policy.mode.merges
                    options.maxPages = policy.maxPages
                    engine.setOptions(options, for: slot)
                }
            }
        }
        publish()
    }

    // MARK: Snapshot

    private func sharingMatrix() -> SharingMatrix {
        let mapped = guests.values.filter(\.mapped).sorted { $0.identity.name < $1.identity.name }
        var owner: [SlotID: UUID] = [:]
        for guest in mapped {
            for slot in guest.slots { owner[slot] = guest.uuid }
        }
        let byGuest = engine.sharingMatrix(groupedBy: owner)
        let pages = mapped.map { a in mapped.map { b in byGuest[a.uuid]?[b.uuid] ?? 0 } }
        return SharingMatrix(guests: mapped.map(\.identity), pages: pages)
    }

    func publish() {
        lastPublish = ContinuousClock.now
        var snapshot = AgentSnapshot()
        snapshot.connected = connection != nil
        snapshot.connectionError = connectionError
        snapshot.counters = engine.counters
        snapshot.tunables = engine.tunables
        snapshot.run = engine.run
        snapshot.trackingBytes = engine.trackingBytes
        scanRate.add(engine.counters.pagesScanned, at: lastPublish)
        snapshot.scanRate = scanRate.perSecond
        snapshot.updatedOnce = reconciledOnce
        snapshot.guests = guests.values.sorted { $0.identity.name < $1.identity.name }.map(status)
        snapshot.unresumedPauses = unresumed.count
        snapshot.reclaim = reclaimedByGoneGuests
        for guest in snapshot.guests { snapshot.reclaim.add(guest.reclaim) }
        agent.publish(snapshot)
    }

    private func status(_ guest: TrackedGuest) -> GuestStatus {
        var counters = Counters()
        for (i, slot) in guest.slots.enumerated() {
            if let c = engine.counters(for: slot) { counters.accumulate(c, first: i == 0) }
        }
        let regions = guest.regions.map {
            RegionStatus(backend: $0.backendID, kind: $0.kind.description, path: $0.path, bytes: $0.size, pages: $0.pageCount)
        }
        var reclaim = guest.reclaimState.status
        reclaim.reason = reclaimIneligibility(guest)
        reclaim.eligible = reclaim.reason == nil
        reclaim.pendingPages = guest.reclaimState.pendingPages
        reclaim.pagesHeld = guest.reclaimState.heldPages
        reclaim.pagesToRepopulate = repopulating ? reclaim.pagesHeld : 0
        return GuestStatus(
            name: guest.identity.name, uuid: guest.identity.uuid, state: guest.state.description,
            mapped: guest.mapped, reason: guest.reason, mode: guest.policy.mode, trustGroup: guest.policy.trustGroup,
            backend: regions.isEmpty ? nil : Set(regions.map(\.kind)).sorted().joined(separator: ", "),
            counters: counters, regions: regions, facts: guest.facts, reclaim: reclaim)
    }
}

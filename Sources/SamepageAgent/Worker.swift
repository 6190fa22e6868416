import Glibc
import Foundation
import GuestMemory
import KernelKSM
import Libvirt
import LinuxSystem
import Logging
import QEMUGuests
import SamepageCore
import SamepageModel
import Synchronization

/// The agent thread's state and loop.
final class Worker {
    let agent: Agent
    let engine: Engine
    var logger: Logger { agent.logger }
    var configuration: AgentConfiguration { agent.configuration }

    var connection: LibvirtConnection?
    var subscription: EventSubscription?
    /// QEMU's STOP and RESUME events: what the guest saw of a pause. Optional: without them
    /// pauses are measured from the calls only.
    var monitorSubscription: QemuMonitorSubscription?
    var connectionError: String?
    var reconnectDelay: Duration = .milliseconds(500)
    var nextConnectAttempt = ContinuousClock.now
    var nextReconcile = ContinuousClock.now
    var lastPublish = ContinuousClock.now - .seconds(1)
    var reconciledOnce = false
    /// Pages scanned over the last seconds, for the published scan rate.
    var scanRate = RateWindow(span: .seconds(10))
    /// The scan-time advisor (used while `advisor_mode = "scan-time"`) and the clocks of the
    /// full scan under way (Worker+Advisor.swift).
    var advisor = ScanTimeAdvisor()
    var stopwatch = FullScanStopwatch()
    var lastFullScan: FullScanTime?
    var cpuClockFailed = false

    /// QEMU processes outside libvirt, while `[qemu] enabled` (Worker+QEMUGuests.swift).
    let qemuDiscovery: QEMUGuestDiscovery?
    var nextQEMUReconcile = ContinuousClock.now
    /// QEMUs outside libvirt already warned about (no identity of their own).
    var unnamedQEMUWarned = Set<pid_t>()
    /// Processes named like a QEMU and ignored as untrusted, already warned about.
    var untrustedQEMUWarned = Set<pid_t>()

    var guests: [UUID: TrackedGuest] = [:]
    var slotOwners: [SlotID: UUID] = [:]
    /// Reclaim totals of guests that are gone.
    var reclaimedByGoneGuests = ReclaimStatus()
    let journal: PauseJournal?
    /// This process's hold on the journal: no other samepaged replays it meanwhile.
    let journalLock: JournalLock?
    /// Journal entries still to resume (from a previous run, or a failed resume).
    var unresumed: [PendingResume] = []
    /// The pauses under way on pause threads, one per guest at most.
    var pausesInFlight: [UUID: PauseInFlight] = [:]
    /// `run unmerge` is allocating reclaimed ranges again.
    var repopulating = false
    /// Which processes map which backends: re-read only where processes are new or changed.
    let mappingIndex = ProcessMappingIndex()
    var lastMapperRefresh = ContinuousClock.now - .seconds(60)
    /// The host's CPU pressure over the last second, from `/proc/pressure/cpu`'s total.
    var cpuPressureWindow = PressureWindow()
    /// The latest reading of `/proc/pressure/cpu`, nil when it cannot be read.
    var cpuPressure: PressureStall?
    var nextPressureReading = ContinuousClock.now
    /// The host's CPU times at the start of the current idle window, and the idle share over
    /// the last complete window (at least a second).
    var cpuTimesWindowStart: (at: ContinuousClock.Instant, times: CPUTimes)?
    var cpuIdlePercent: Double?
    var pressureUnavailable: String?
    /// samepaged's hold on ksmd, while `[kernel_ksm] enabled`.
    var kernelGovernor: KernelKSMGovernor?
    /// The kernel's figures when samepaged does not govern ksmd, read at each reconcile.
    var ungovernedKernelKSM = KernelKSMStatus()
    /// The `merge` values samepaged changed, by guest UUID and QEMU run (`TrackedGuest.run`),
    /// then backend id: kept by the worker so that a guest mapped again (a device change)
    /// keeps its originals, and never put back on another run.
    var originalMerge: [UUID: (run: String?, backends: [String: Bool])] = [:]

    init(agent: Agent) throws {
        self.agent = agent
        engine = try Engine(tunables: agent.configuration.tunables)
        engine.run = agent.configuration.run
        journal = agent.configuration.pauseJournal.map(PauseJournal.init(path:))
        if let path = agent.configuration.pauseJournal {
            journalLock = try JournalLock.acquire(journal: path)
        } else {
            journalLock = nil
        }
        let qemu = agent.configuration.qemuGuests
        qemuDiscovery = qemu.enabled
            ? QEMUGuestDiscovery(
                procRoot: agent.configuration.procRoot, libvirtRunDirectory: agent.configuration.libvirtRunDirectory,
                proxmoxRunDirectories: Set([qemu.proxmoxRunDirectory] + QEMUGuestCommandLine.defaultProxmoxRunDirectories).sorted(),
                trust: Self.hypervisorTrust(qemu.hypervisorUsers, logger: agent.logger))
            : nil
        if let journal {
            unresumed = try journal.entries().map { PendingResume(entry: $0, fromEarlierRun: true) }
            if !unresumed.isEmpty {
                agent.logger.warning("\(unresumed.count) guest(s) paused by an earlier samepaged: resuming them once libvirt is reachable")
            }
        }
        // Last: nothing after it may fail, or ksmd's settings would stay changed.
        if agent.configuration.kernelKSM.enabled {
            kernelGovernor = try makeKernelGovernor(agent.configuration.kernelKSM)
        }
    }

    /// Who may be a hypervisor: root and the configured users that exist here.
    static func hypervisorTrust(_ users: [String], logger: Logger) -> ProcessTrust {
        let (trust, unknown) = ProcessTrust.users(users)
        if !unknown.isEmpty {
            logger.notice("qemu.hypervisor_users: no such user on this host: \(unknown.joined(separator: ", ")) (ignored)")
        }
        return trust
    }

    func loop() {
        while true {
            let inbox = agent.takeInbox()
            if inbox.stopping { break }
            var reconcileNow = false
            // libvirt's events are of libvirt's guests: the QEMUs outside it are looked for at
            // their own interval, or when asked (`.refresh`).
            var lookForQEMUsNow = false
            for request in inbox.requests {
                switch request {
                case .tunables(let tunables): applyTunables(tunables)
                case .run(let mode):
                    engine.run = mode
                    if mode == .unmerge {
                        stopwatch.discardScan()
                        startRepopulating()
                    }
                case .reloadPolicies: reloadPolicies()
                case .refresh:
                    reconcileNow = true
                    lookForQEMUsNow = true
                case .sharing(let reply): reply.send(sharingMatrix())
                case .kernelKSM(let configuration, let reply): reply.send(governKernelKSM(configuration))
                }
            }
            if inbox.requests.contains(where: \.isTunables) { agent.settle(engine.tunables) }
            if inbox.closed { disconnect(reason: "libvirtd closed the connection") }
            if connection == nil && ContinuousClock.now >= nextConnectAttempt { connect() }
            for notification in inbox.events { handle(notification, reconcile: &reconcileNow) }
            if connection != nil && (reconcileNow || ContinuousClock.now >= nextReconcile) { reconcile() }
            if qemuDiscovery != nil && (lookForQEMUsNow || ContinuousClock.now >= nextQEMUReconcile) {
                reconcileQEMUGuests()
                publish()
            }
            releaseExitedGuests()

            if !unresumed.isEmpty { resumePending() }
            // A batch ends with its full scan, as ksmd's does: the advisor measures each alone.
            let report = engine.scanBatch(endingFullScans: true)
            let scanCompleted = measureBatch(report)
            for zero in report.confirmedZeroPages { zeroPageConfirmed(slot: zero.slot, page: zero.page) }
            for failure in report.failures { slotFailed(failure) }
            readCPUPressure()
            // ksmd's run follows memory even while libvirtd is away (every 5 s).
            kernelGovernor?.tick(now: ContinuousClock.now, holdBack: kernelMergeHoldBack())
            collectPauses()
            reclaimIfDue()
            completePauseRecords()
            checkRefaults()
            repopulateStep()

            if ContinuousClock.now - lastPublish >= .milliseconds(250) { publish() }
            // A batch that only closed a full scan which read pages is not idle.
            let idle = report.pagesScanned == 0 && !scanCompleted
            let pause = idle ? max(engine.tunables.sleepMillisecs, 50) : engine.tunables.sleepMillisecs
            if pause > 0 { usleep(UInt32(pause) * 1000) }
        }
        finishPauses()
        for guest in guests.values { completePauseRecord(of: guest, force: true) }
        releaseKernelKSM()
        for guest in guests.values { detach(guest, reason: "agent stopped") }
        guests = [:]
        subscription = nil
        monitorSubscription = nil
        connection = nil
        publish()
    }

    // MARK: libvirt

    func connect() {
        do {
            let connection = try LibvirtConnection(uri: configuration.uri)
            let agent = self.agent
            subscription = try connection.observeEvents({ agent.deliver($0) }, onClose: { _ in agent.connectionDidClose() })
            do {
                monitorSubscription = try connection.observeQemuMonitorEvents(["STOP", "RESUME"]) { agent.deliver($0) }
            } catch {
                logger.warning("no QEMU monitor events (\(error)): pauses are measured from the libvirt calls only")
            }
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

    func disconnect(reason: String) {
        guard connection != nil else { return }
        logger.error("lost libvirt connection: \(reason); guests stay mapped while their QEMU runs")
        subscription = nil
        monitorSubscription = nil
        connection = nil
        connectionError = reason
        nextConnectAttempt = ContinuousClock.now + reconnectDelay
        publish()
    }

    func handle(_ notification: DomainEventNotification, reconcile: inout Bool) {
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
    func reconcile() {
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
        for (uuid, guest) in guests where guest.source == .libvirt && !active.contains(uuid) {
            guests[uuid] = nil
            detach(guest, reason: "guest stopped")
        }
        for info in domains {
            if let guest = guests[info.uuid], guest.source != .libvirt {
                // libvirt's own guest, taken for one outside it: libvirt's it is.
                guests[info.uuid] = nil
                detach(guest, reason: "libvirt manages it")
            }
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
        checkMapped(guests.values.filter { $0.mapped && $0.source == .libvirt })
        reconcileKernelKSM(connection: connection)
        publish()
    }

    /// At every reconcile, for each mapped guest: who else maps its RAM, the DMA descriptors
    /// of its processes, and whether its private RAM is still where it was.
    func checkMapped(_ mapped: [TrackedGuest]) {
        guard !mapped.isEmpty else { return }
        // At most once a second, for every mapped guest: each pause makes libvirt events and
        // so a reconcile, and a pass over /proc costs with every process on the host. The
        // pause itself looks again when the index is over a second old.
        if ContinuousClock.now - lastMapperRefresh >= .seconds(1) { refreshMappers(guests.values.filter(\.mapped)) }
        for guest in mapped where guest.policy.mode.reclaims { _ = checkDMADescriptors(guest) }
        for guest in mapped where guest.hasPrivateRAM {
            // Private RAM has no file whose identity can be checked: its mapping must still be there.
            for region in guest.privateRegions {
                do { try region.ensureStillMapped() } catch {
                    logger.info("guest \(guest.identity.name): \(error); mapping it again")
                    unmap(guest)
                    map(guest)
                    break
                }
            }
        }
    }

    /// Re-reads a mapped guest's XML at every reconcile, not only on events (events are lost
    /// while libvirtd restarts): a device added since is seen within one interval. A changed
    /// RAM layout maps the guest again.
    func refreshDefinition(_ guest: TrackedGuest, connection: LibvirtConnection) {
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
}

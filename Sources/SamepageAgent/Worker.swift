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

/// The agent's thread: its loop, and the table of the guests it follows (attached, mapped,
/// released as libvirt and /proc say), which every part of the agent reads.
///
/// Everything else is a room of its own that the worker owns and hands the guest table to:
/// libvirt's connection (``LibvirtLink``), QEMUs outside libvirt (``QEMUScanner``,
/// ``QEMUGuestQueries``), the scan-time advisor (``AdvisorDriver``), the kernel's KSM
/// (``KernelMergeControl``), who else maps guest RAM (``GuestMappers``) and zero-page
/// reclaim (``Reclaimer``). They say what the worker must do next (publish, reconcile) by
/// what they return; none calls back into it.
final class Worker {
    let agent: Agent
    let engine: Engine
    var logger: Logger { agent.logger }
    var configuration: AgentConfiguration { agent.configuration }

    var guests: [UUID: TrackedGuest] = [:]
    /// Which guest each engine slot is of.
    var slotOwners: [SlotID: UUID] = [:]
    let link: LibvirtLink
    var connection: LibvirtConnection? { link.connection }
    var nextReconcile = ContinuousClock.now
    var lastPublish = ContinuousClock.now - .seconds(1)
    /// libvirt's guests were listed once since samepaged started.
    var reconciledOnce = false
    /// Pages scanned over the last seconds, for the published scan rate.
    var scanRate = RateWindow(span: .seconds(10))
    var advisor: AdvisorDriver
    /// QEMU processes outside libvirt, while `[qemu] enabled`.
    var qemuScanner: QEMUScanner?
    let queries: QEMUGuestQueries
    /// The host's process list, taken once for both the QEMU scanner and the mappers.
    let processes: ProcessTables
    let mappers: GuestMappers
    let reclaimer: Reclaimer
    let kernel: KernelMergeControl
    /// Each guest's fairly attributed sharing and huge-page zero counts, worked out now and then.
    var attribution = GuestAttribution()
    /// samepaged's own RSS and CPU, for the savings.
    var costMeter = AgentCostMeter()

    init(agent: Agent) throws {
        self.agent = agent
        engine = try Engine(tunables: agent.configuration.tunables)
        engine.run = agent.configuration.run
        link = LibvirtLink(agent: agent)
        advisor = AdvisorDriver(logger: agent.logger)
        processes = ProcessTables(procRoot: agent.configuration.procRoot)
        qemuScanner = QEMUScanner(configuration: agent.configuration, processes: processes, logger: agent.logger)
        queries = QEMUGuestQueries(configuration: agent.configuration, logger: agent.logger)
        mappers = GuestMappers(logger: agent.logger, processes: processes)
        reclaimer = try Reclaimer(agent: agent, mappers: mappers, queries: queries)
        // Last: nothing after it may fail, or ksmd's settings would stay changed.
        kernel = try KernelMergeControl(configuration: agent.configuration, logger: agent.logger, queries: queries)
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
                case .tunables(let tunables): advisor.apply(tunables, to: engine)
                case .run(let mode):
                    engine.run = mode
                    if mode == .unmerge {
                        advisor.discardScan()
                        reclaimer.startRepopulating(guests)
                    }
                case .reloadPolicies: reloadPolicies()
                case .refresh:
                    reconcileNow = true
                    lookForQEMUsNow = true
                case .sharing(let reply): reply.send(sharingMatrix())
                case .kernelKSM(let configuration, let reply):
                    let result = kernel.govern(configuration, guests: guests, connection: connection, reconciledOnce: reconciledOnce)
                    publish()
                    reply.send(result)
                }
            }
            if inbox.requests.contains(where: \.isTunables) { agent.settle(engine.tunables) }
            if inbox.closed { disconnect(reason: "libvirtd closed the connection") }
            if link.connectIsDue(at: ContinuousClock.now) { connect() }
            for notification in inbox.events { handle(notification, reconcile: &reconcileNow) }
            if connection != nil && (reconcileNow || ContinuousClock.now >= nextReconcile) { reconcile() }
            if let handles = qemuScanner?.scan(at: ContinuousClock.now, force: lookForQEMUsNow) {
                reconcileQEMUGuests(handles)
                // Without libvirt, one pass over /proc has seen every guest there is.
                if !link.isConfigured { reconciledOnce = true }
                publish()
            }
            releaseExitedGuests()

            if reclaimer.resumePending(guests, connection: connection) { publish() }
            // A batch ends with its full scan, as ksmd's does: the advisor measures each alone.
            let report = engine.scanBatch(endingFullScans: true)
            let scanCompleted = advisor.measureBatch(report, engine: engine)
            if scanCompleted { agent.settle(engine.tunables) }
            for zero in report.confirmedZeroPages { zeroPageConfirmed(slot: zero.slot, page: zero.page) }
            for zero in report.newZeroPages { zeroPageSeen(slot: zero.slot, page: zero.page) }
            for failure in report.failures { slotFailed(failure) }
            reclaimer.readLoad(guests)
            // ksmd's run follows memory even while libvirtd is away (every 5 s).
            kernel.tick(guests, connected: connection != nil || !link.isConfigured, reconciledOnce: reconciledOnce)
            if reclaimer.collectPauses(guests) { publish() }
            reclaimer.reclaimIfDue(guests, engine: engine, connection: connection)
            if reclaimer.afterBatch(guests, engine: engine) { publish() }

            if ContinuousClock.now - lastPublish >= .milliseconds(250) { publish() }
            // A batch that only closed a full scan which read pages is not idle.
            let idle = report.pagesScanned == 0 && !scanCompleted
            let pause = idle ? max(engine.tunables.sleepMillisecs, 50) : engine.tunables.sleepMillisecs
            if pause > 0 { usleep(UInt32(pause) * 1000) }
        }
        reclaimer.finishPauses(guests, link: link)
        kernel.release(guests, connection: connection)
        for guest in guests.values { detach(guest, reason: "agent stopped") }
        guests = [:]
        link.close()
        publish()
    }

    // MARK: libvirt

    func connect() {
        if link.connect() { nextReconcile = ContinuousClock.now }
        publish()
    }

    func disconnect(reason: String) {
        if link.disconnect(reason: reason) { publish() }
    }

    /// A page the engine found zero on two visits in a row (from its batch report).
    func zeroPageConfirmed(slot: SlotID, page: Int) {
        guard let uuid = slotOwners[slot], let guest = guests[uuid], let region = guest.slots.firstIndex(of: slot) else { return }
        reclaimer.zeroPageConfirmed(guest, region: region, page: page)
    }

    /// A page the engine found zero for the first time: looked at again after a short while.
    func zeroPageSeen(slot: SlotID, page: Int) {
        guard let uuid = slotOwners[slot], let guest = guests[uuid], let region = guest.slots.firstIndex(of: slot) else { return }
        reclaimer.zeroPageSeen(guest, region: region, page: page)
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
                // A pause of ours under way is not the guest's state: it is running, as far as
                // anyone asking samepaged is concerned, and its pause ends within the budget.
                let state = GuestRunState(info.state)
                if !(state == .paused && reclaimer.holdsPause(of: info.uuid)) { guest.state = state }
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
        kernel.reconcile(guests, connection: connection)
        publish()
    }

    func attach(_ info: DomainInfo, connection: LibvirtConnection) {
        let guest = TrackedGuest(info)
        guests[info.uuid] = guest
        guest.policy = configuration.policy(guest.identity, guest.qemu?.vmid)
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

    /// Opens the RAM of one of libvirt's guests in its QEMU (found by libvirt's pid file), as
    /// its domain XML describes it. Returns false when its XML was never read.
    func openLibvirtRAM(of guest: TrackedGuest) throws(UnmappableReason) -> Bool {
        guard let definition = guest.definition else { return false }
        let process = try QEMUProcess.libvirtGuest(
            name: guest.identity.name, uuid: guest.uuid, runDirectory: configuration.libvirtRunDirectory)
        let expected = definition.ramRegions.map { ExpectedRegion(backendID: $0.backendID, size: Int($0.sizeKiB) * 1024) }
        let sockets = GuestMappers.vhostUserSockets(definition, commandLine: try? process.commandLine())
        try openRAM(of: guest, in: process, expected: expected, vhostUserSockets: sockets)
        return true
    }

    /// At every reconcile, for each mapped guest: who else maps its RAM, the DMA descriptors
    /// of its processes, and whether its private RAM is still where it was.
    func checkMapped(_ mapped: [TrackedGuest]) {
        guard !mapped.isEmpty else { return }
        // At most once a second, for every mapped guest: each pause makes libvirt events and
        // so a reconcile, and a pass over /proc costs with every process on the host. The
        // pause itself looks again when the index is over a second old.
        if ContinuousClock.now - mappers.lastRefresh >= .seconds(1) { mappers.refresh(guests.values.filter(\.mapped)) }
        for guest in mapped where guest.policy.mode.reclaims { GuestMappers.checkDMADescriptors(guest) }
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

import Foundation
import GuestMemory
import Logging
import SamepageCore
import SamepageModel
import Synchronization

/// What the agent publishes: the snapshot other threads read, and the sharing matrix.
extension Worker {
    func sharingMatrix() -> SharingMatrix {
        let mapped = guests.values.filter(\.mapped).sorted { $0.identity.name < $1.identity.name }
        return SharingMatrix(guests: mapped.map(\.identity), slots: mapped.map(\.slots), in: engine)
    }

    func publish() {
        lastPublish = ContinuousClock.now
        var snapshot = AgentSnapshot()
        snapshot.connected = connection != nil
        snapshot.libvirtConfigured = link.isConfigured
        snapshot.connectionError = link.error
        snapshot.counters = engine.counters
        snapshot.tunables = engine.tunables
        snapshot.run = engine.run
        snapshot.trackingBytes = engine.trackingBytes
        scanRate.add(engine.counters.pagesScanned, at: lastPublish)
        snapshot.scanRate = scanRate.perSecond
        snapshot.lastFullScan = advisor.lastFullScan
        snapshot.updatedOnce = reconciledOnce
        attribution.refresh(guests, engine: engine, at: lastPublish)
        snapshot.agentCost = costMeter.read(at: lastPublish)
        snapshot.guests = guests.values.sorted { $0.identity.name < $1.identity.name }.map(status)
        snapshot.unresumedPauses = reclaimer.retries.count
        snapshot.reclaim = reclaimer.reclaimedByGoneGuests
        for guest in snapshot.guests { snapshot.reclaim.add(guest.reclaim) }
        snapshot.kernelKSM = kernel.status
        snapshot.ignoredProcesses = qemuScanner?.ignored ?? []
        agent.publish(snapshot)
    }

    func status(_ guest: TrackedGuest) -> GuestStatus {
        let counters = engine.counters(summing: guest.slots)
        let regions = guest.regions.map {
            RegionStatus(backend: $0.backendID, kind: $0.kind.description, path: $0.path, bytes: $0.size, pages: $0.pageCount)
        } + guest.privateRegions.map {
            RegionStatus(backend: $0.backendID, kind: $0.kind.description, path: nil, bytes: $0.size, pages: $0.pageCount)
        }
        var reclaim = guest.reclaimState.status
        reclaim.reason = reclaimer.ineligibility(guest)
        reclaim.eligible = reclaim.reason == nil
        reclaim.pendingPages = guest.reclaimState.pendingPages
        reclaim.pagesHeld = guest.reclaimState.heldPages
        reclaim.pagesToRepopulate = reclaimer.repopulation.active ? reclaim.pagesHeld : 0
        var status = GuestStatus(
            name: guest.identity.name, uuid: guest.identity.uuid, state: guest.state.description,
            mapped: guest.mapped, reason: guest.reason, mode: guest.policy.mode, trustGroup: guest.policy.trustGroup,
            backend: regions.isEmpty ? nil : Set(regions.map(\.kind)).sorted().joined(separator: ", "),
            counters: counters, regions: regions, facts: guest.facts, reclaim: reclaim, kernelKSM: kernel.guestStatus(guest))
        status.source = guest.source
        status.vmid = guest.qemu?.vmid
        status.privateRAM = guest.hasPrivateRAM
        let figures = attribution.of(guest.uuid)
        status.attributedSharingBytes = Int((figures.sharingPages * Double(pageSize)).rounded())
        status.hugePageZeroes = figures.hugePageZeroes
        status.reasonIfReclaiming = reclaimer.ineligibility(guest, asIfReclaiming: true)
        return status
    }
}

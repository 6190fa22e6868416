import Foundation
import GuestMemory
import Libvirt
import Logging
import SamepageCore
import SamepageModel
import Synchronization

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

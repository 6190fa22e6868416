import Foundation
import GuestMemory
import KernelKSM
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
    /// Where it was found: libvirt, or a QEMU outside libvirt (then ``qemu`` says how to reach it).
    let source: GuestSource
    /// A guest outside libvirt: its QEMU as found, and its QMP socket.
    var qemu: QEMUGuestHandle?
    var domainID: UInt32?
    var state: GuestRunState
    var definition: DomainDefinition?
    var facts = GuestFacts()
    var policy = GuestPolicy()
    var process: QEMUProcess?
    /// Its shared RAM backends, opened (reclaim works on these)...
    var regions: [GuestRegion] = []
    /// ...and its private RAM, read in place in QEMU (accounted only; the kernel's KSM merges it).
    var privateRegions: [PrivateGuestRegion] = []
    /// The `merge` property samepaged last gave its memory backends (governing ksmd only);
    /// the values they had before are the worker's (`Worker.originalMerge`).
    var kernelMerge: Bool?
    /// Why the kernel may not merge it (governing ksmd only); nil when it may.
    var kernelMergeRefusal: String?
    /// Its QEMU's `/proc/PID/ksm_stat`, read at each reconcile.
    var kernelStat: ProcessKSMStat?
    /// QEMU's pid from libvirt's pid file, for a guest that is not mapped.
    var qemuPID: pid_t?
    var slots: [SlotID] = []
    /// The Unix socket paths of its vhost-user devices (from the XML and QEMU's command line).
    var vhostUserSockets: Set<String> = []
    var reason: String?
    /// Dropped after a failure: not mapped again until QEMU restarts (a new domain id).
    var failed = false

    /// Its zero-page reclaim: pending, reclaimed and refaulted pages, pause costs, backoffs.
    var reclaimState = ReclaimState()

    /// One of libvirt's domains (see `init(_: DomainInfo)`, at the libvirt edge).
    init(libvirtDomain name: String, uuid: UUID, id: UInt32?, state: GuestRunState) {
        identity = GuestIdentity(name: name, uuid: uuid.uuidString.lowercased())
        self.uuid = uuid
        source = .libvirt
        domainID = id
        self.state = state
    }

    /// A guest outside libvirt; its state is QEMU's until QMP says otherwise.
    init(_ handle: QEMUGuestHandle) {
        identity = GuestIdentity(name: handle.name, uuid: handle.uuid.uuidString.lowercased())
        uuid = handle.uuid
        source = handle.source
        qemu = handle
        state = .running
    }

    var mapped: Bool { !slots.isEmpty }
    /// Which run of its QEMU this is: libvirt's domain id, or for a guest outside libvirt its
    /// QEMU's pid and start time. What was saved of one run never applies to the next.
    var run: String? {
        if let qemu { return "\(qemu.pid)@\(qemu.startTime)" }
        return domainID.map { "domain \($0)" }
    }
    /// Whether any of its RAM is private to QEMU.
    var hasPrivateRAM: Bool { !privateRegions.isEmpty }
}

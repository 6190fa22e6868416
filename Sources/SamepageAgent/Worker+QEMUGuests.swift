import Foundation
import SamepageModel

/// Guests libvirt does not manage, in the guest table: the QEMUs ``QEMUScanner`` found are
/// matched against the tracked guests (attached, restarted, gone), whether libvirtd runs or
/// not. Everything about such a guest comes from its process (command line, maps,
/// descriptors) and, briefly, from its QMP server socket (``QEMUGuestQueries``).
extension Worker {
    /// Makes the tracked guests outside libvirt match the QEMU processes running now
    /// (`handles`, one per identity).
    func reconcileQEMUGuests(_ handles: [QEMUGuestHandle]) {
        let seen = Set(handles.map(\.uuid))
        for handle in handles {
            if let guest = guests[handle.uuid] {
                // A libvirt guest with that UUID is libvirt's: never two owners.
                guard guest.source != .libvirt else { continue }
                if guest.qemu?.pid != handle.pid || guest.qemu?.startTime != handle.startTime {
                    guests[handle.uuid] = nil
                    detach(guest, reason: "its QEMU restarted")
                    attachQEMU(handle)
                } else {
                    queries.refreshProxmoxLock(guest)
                    // A guest last seen paused or busy with a job is asked again (a pause
                    // attempt only asks guests that look pausable); never one whose policy
                    // is off, whose socket is not used.
                    if guest.policy.mode != .off, guest.state != .running || guest.facts.activeJob { queries.refreshRunState(guest) }
                }
            } else {
                attachQEMU(handle)
            }
        }
        for (uuid, guest) in guests where guest.source != .libvirt && !seen.contains(uuid) {
            guests[uuid] = nil
            detach(guest, reason: "its QEMU exited")
        }
        checkMapped(guests.values.filter { $0.mapped && $0.source != .libvirt })
        if kernel.governor != nil, guests.values.contains(where: { $0.source != .libvirt }) { kernel.reconcile(guests, connection: connection) }
    }

    /// Starts following a guest outside libvirt: its facts from the command line and, once
    /// its policy asks for more than `off`, one QMP exchange (run state, memory backends,
    /// hot-plugged devices), then its RAM mapped as its policy asks. The QMP socket of a
    /// guest whose policy is `off` is never connected to.
    func attachQEMU(_ handle: QEMUGuestHandle) {
        let guest = TrackedGuest(handle)
        guests[handle.uuid] = guest
        guest.policy = configuration.policy(guest.identity, guest.qemu?.vmid)
        guest.facts = handle.commandLineFacts
        queries.refreshProxmoxLock(guest)
        if guest.policy.mode != .off { queries.askAtAttach(guest) }
        logger.info("found \(guest.source) guest \(guest.identity.name) (\(guest.identity.uuid)\(handle.uuidDerived ? ", derived" : "")): QEMU \(handle.pid)\(handle.vmid.map { ", VMID \($0)" } ?? ""), QMP \(handle.qmpSocket ?? "none: \(handle.unreachable ?? "")")")
        if guest.policy.mode == .off {
            guest.reason = "policy mode is off"
        } else {
            map(guest)
        }
        if let reason = guest.reason { logger.info("guest \(guest.identity.name) not mapped: \(reason)") }
    }
}

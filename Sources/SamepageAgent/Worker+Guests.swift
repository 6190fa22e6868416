import Glibc
import Foundation
import GuestMemory
import Logging
import SamepageCore
import SamepageModel
import Synchronization

/// Guests coming and going: mapping their RAM backends (libvirt's are attached in
/// `Worker.swift`, by reconcile; the others in `Worker+QEMUGuests.swift`), the other processes
/// that map them, releasing them, and policy changes applied live.
extension Worker {
    /// Opens the guest's RAM backends and puts them on the scan list.
    func map(_ guest: TrackedGuest) {
        do {
            if let handle = guest.qemu {
                // Outside libvirt: the QEMU found, its regions as QMP listed them (else its
                // command line's backends), its vhost-user sockets from its command line.
                try openRAM(of: guest, in: QEMUGuestQueries.openQEMU(handle), expected: handle.expected,
                            vhostUserSockets: handle.commandLine.vhostUserSockets)
            } else {
                guard try openLibvirtRAM(of: guest) else { return }
            }
        } catch {
            guest.regions = []
            guest.privateRegions = []
            guest.reason = error.description
            return
        }
        let group = guest.policy.trustGroup.map { engine.trustGroup(named: $0) } ?? engine.privateTrustGroup()
        // Shared regions first: a slot's index among the guest's slots is its region's index
        // in `regions`, which reclaim goes by.
        let sources: [(backendID: String, source: any PageSource)] =
            guest.regions.map { ($0.backendID, $0) } + guest.privateRegions.map { ($0.backendID, $0) }
        for (backendID, source) in sources {
            let options = SlotOptions(
                name: "\(guest.identity.name)/\(backendID)", trustGroup: group,
                merging: guest.policy.mode.merges, maxPages: guest.policy.maxPages)
            guard let slot = engine.addSlot(source, options: options) else {
                unmap(guest)
                guest.reason = "too many regions on the scan list"
                return
            }
            guest.slots.append(slot)
            slotOwners[slot] = guest.uuid
        }
        guest.reason = nil
        let kinds = Set(guest.regions.map(\.kind.description) + guest.privateRegions.map(\.kind.description)).sorted().joined(separator: ", ")
        let bytes = guest.regions.reduce(0) { $0 + $1.size } + guest.privateRegions.reduce(0) { $0 + $1.size }
        logger.info("guest \(guest.identity.name) mapped: \(guest.regions.count + guest.privateRegions.count) region(s), \(kinds), \(bytes >> 20) MiB")
    }

    /// Opens the guest's RAM in its QEMU: shared backends (read-write where zero pages may be
    /// reclaimed, for fallocate; read-only everywhere else), and private RAM, read in place
    /// through QEMU's page map and never changed.
    func openRAM(
        of guest: TrackedGuest, in process: consuming QEMUProcess, expected: [ExpectedRegion], vhostUserSockets: Set<String>
    ) throws(UnmappableReason) {
        let opened = try process.openRAM(expecting: expected, access: Self.access(for: guest.policy.mode))
        guest.regions = opened.compactMap(\.sharedRegion)
        guest.privateRegions = opened.compactMap { if case .private(let region) = $0 { region } else { nil } }
        guest.vhostUserSockets = vhostUserSockets
        guest.process = consume process
        reclaimer.punched.restore(guest)
        mappers.refresh([guest])
    }

    /// How a guest's backends are opened in `mode`: read-write only where zero pages may be
    /// reclaimed (for fallocate), read-only everywhere else.
    static func access(for mode: PolicyMode) -> BackendAccess { mode.reclaims ? .readWrite : .readOnly }

    /// Takes the guest off the scan list and closes its backends, releasing its RAM.
    func unmap(_ guest: TrackedGuest) {
        // What its backends hold outlives the mapping: recorded before it is forgotten.
        reclaimer.punched.record(guest)
        for slot in guest.slots {
            engine.removeSlot(slot)
            slotOwners[slot] = nil
        }
        guest.slots = []
        guest.regions = []
        guest.privateRegions = []
        guest.process = nil
        guest.reclaimState.forgetPages()
    }

    func detach(_ guest: TrackedGuest, reason: String) {
        if guest.mapped { logger.info("guest \(guest.identity.name) released: \(reason)") }
        unmap(guest)
        reclaimer.guestLeaves(guest)
        reclaimer.punched.forget(guest)
        agent.forgetStateEvents(of: guest.uuid)
    }

    /// QEMU exits are seen on its pidfd, even while libvirtd is down.
    func releaseExitedGuests() {
        for (uuid, guest) in guests where guest.process?.hasExited ?? false {
            guests[uuid] = nil
            detach(guest, reason: "its QEMU exited")
        }
    }

    func slotFailed(_ failure: SlotFailure) {
        guard let uuid = slotOwners[failure.slot], let guest = guests[uuid] else { return }
        slotOwners[failure.slot] = nil
        guest.slots.removeAll { $0 == failure.slot }
        logger.warning("guest \(guest.identity.name): dropped region \(failure.name): \(failure.reason)")
        unmap(guest)
        guest.failed = true
        guest.reason = "dropped: \(failure.reason)"
        publish()
    }

    func reloadPolicies() {
        for guest in guests.values {
            let policy = configuration.policy(guest.identity, guest.qemu?.vmid)
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
                    // Outside libvirt, its QMP socket is asked first now that its policy
                    // asks for more than `off` (never before: see attachQEMU).
                    if old.mode == .off, guest.qemu != nil { queries.askAtAttach(guest) }
                    map(guest)
                }
            } else if guest.regions.contains(where: { $0.access != Self.access(for: policy.mode) }) {
                // Reclaim needs the backend open read-write, and nothing else may hold it so:
                // the guest is mapped again with the access its new mode needs, before any
                // pause could use it.
                unmap(guest)
                map(guest)
            } else {
                if !policy.mode.reclaims { guest.reclaimState.forgetPending() }
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
        // Who the kernel may merge follows at once, not at the next reconcile; ksmd is held
        // stopped meanwhile if a guest's merging could not be switched off.
        kernel.reconcile(guests, connection: connection)
        publish()
    }
}

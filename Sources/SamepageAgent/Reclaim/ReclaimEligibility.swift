/// Whether a guest's zero pages may be reclaimed at all, and in an operator's words why not.
///
/// A pure function of the guest as tracked (its policy, facts, regions and state) and of two
/// things only the reclaimer knows, passed in: whether reclaim is enabled (a pause journal is
/// configured) and why a pause of ours has not ended yet. Its own room so that each reason is
/// a unit test over a ``TrackedGuest`` built by hand, with no pause, journal or host.
enum ReclaimEligibility {
    /// Why the guest's zero pages may not be reclaimed now; nil when they may. The first
    /// reason that applies, in the order an operator would fix them.
    ///
    /// With `asIfReclaiming`, the answer for the guest as if its policy were mode `zero` or
    /// `merge` (what `samepage advise` tells): the mode is passed over, and so are backends
    /// open read-only, which a change to a reclaiming mode opens again read-write, and, for a
    /// guest in mode `off`, not being mapped (the mode is why; its hugepages are then judged
    /// from its definition).
    static func refusal(of guest: TrackedGuest, reclaimEnabled: Bool, unendedPause: String?, asIfReclaiming: Bool = false) -> String? {
        guard reclaimEnabled else { return "reclaim is disabled (no pause journal)" }
        switch asIfReclaiming ? .zero : guest.policy.mode {
        case .off, .report: return "policy mode \(guest.policy.mode.rawValue) never changes the guest"
        case .zero, .merge: break
        }
        let offNow = asIfReclaiming && guest.policy.mode == .off
        guard guest.mapped || offNow else { return "not mapped" }
        if guest.hasPrivateRAM {
            return "private RAM: its zero pages are the kernel's KSM's to merge (use_zero_pages), not reclaimed"
        }
        let facts = guest.facts
        // Suspend stops vCPUs, block I/O and vhost-user rings; not these writers.
        if !facts.assignedDevices.isEmpty { return "assigned devices keep writing while paused: \(facts.assignedDevices.joined(separator: ", "))" }
        if !facts.ivshmem.isEmpty { return "ivshmem devices: \(facts.ivshmem.joined(separator: ", "))" }
        if !facts.persistentMemory.isEmpty { return "persistent memory devices: \(facts.persistentMemory.joined(separator: ", "))" }
        if let security = facts.launchSecurity { return "launch security (\(security))" }
        if facts.preallocated { return "preallocated memory" }
        if facts.locked { return "locked memory" }
        if facts.activeJob { return "a job (migration, snapshot, dump) is running" }
        if !facts.dmaDescriptors.isEmpty { return "devices that DMA into guest RAM: \(facts.dmaDescriptors.joined(separator: ", "))" }
        if facts.definitionUnknown { return "its domain XML could not be read again at the last reconcile" }
        if let why = facts.qmpUnreachable { return "it cannot be paused: \(why)" }
        if let lock = facts.proxmoxLock { return "Proxmox VE lock: \(lock) (an operation of Proxmox's is under way)" }
        if let failure = unendedPause ?? guest.reclaimState.status.resumeFailure {
            return "a pause of ours has not ended yet (\(failure))"
        }
        if !asIfReclaiming || guest.policy.mode.reclaims, guest.regions.contains(where: { $0.access != .readWrite }) { return "its backends are open read-only (mapped again shortly)" }
        if !facts.otherMappers.isEmpty {
            // The guest's own vhost-user backends may map its RAM (suspend stops their rings);
            // anything else might write a page between our check and the punch.
            return "RAM mapped by other processes: \(facts.otherMappers.map { "\($0.command) (\($0.pid))" }.joined(separator: ", "))"
        }
        // Only RAM is reclaimed: a backend on a disk filesystem (memory_backing_dir on a disk,
        // a persistent-memory image) is the kernel's to evict, and a punch there makes a
        // later write need a disk block (ENOSPC is a SIGBUS in QEMU).
        if let disk = guest.regions.first(where: { if case .diskFile = $0.kind { true } else { false } }) {
            return "its backend \(disk.backendID) is on a disk filesystem (\(disk.kind)): only RAM on tmpfs, memfd or hugetlbfs is reclaimed"
        }
        let hugetlbfs = guest.regions.contains { if case .hugetlbfs = $0.kind { true } else { false } }
            || (offNow && guest.regions.isEmpty && guest.facts.hugepages)
        if !guest.policy.reclaimHugetlbfs, hugetlbfs {
            return "hugetlbfs backend (a refault against an empty pool kills QEMU; set reclaim_hugetlbfs to allow)"
        }
        if guest.policy.maxPauseMsPerMinute == 0 { return "max_pause_ms_per_minute is 0" }
        if guest.state != .running { return "not running (\(guest.state))" }
        return nil
    }
}

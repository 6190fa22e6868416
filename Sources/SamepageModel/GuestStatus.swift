import SamepageCore

/// One guest in the agent's listing, mapped and scanned or why not; also what the control API
/// shows of a guest (`list`, `dominfo`).
public struct GuestStatus: Sendable, Equatable {
    public var name: String
    public var uuid: String
    /// Where samepaged found it: libvirt, or a QEMU outside libvirt (proxmox, qemu).
    public var source: GuestSource = .libvirt
    /// A Proxmox VE guest's VMID.
    public var vmid: Int?
    /// libvirt's state: running, paused, ... (for a guest outside libvirt, QEMU's run state in
    /// libvirt's words).
    public var state: String
    /// Whether its RAM is mapped and on the engine's scan list.
    public var mapped: Bool
    /// Why it is not mapped (or was dropped); nil when mapped.
    public var reason: String?
    public var mode: PolicyMode
    public var trustGroup: String?
    /// The kinds of its RAM backends, e.g. "memfd".
    public var backend: String?
    public var regions: [RegionStatus]
    public var facts: GuestFacts
    /// The engine's counters summed over the guest's regions.
    public var counters: Counters
    /// Zero-page reclaim: eligibility and what it did.
    public var reclaim: ReclaimStatus
    /// What the kernel's own KSM does with the guest; nil when nothing is known (no QEMU
    /// process found, or a kernel without `ksm_stat`).
    public var kernelKSM: GuestKernelKSM?
    /// Whether its RAM is private to QEMU (the kernel's KSM may merge it), not shared memory.
    public var privateRAM = false
    /// What sharing would save on its pages, attributed fairly between the guests that share
    /// them (each member of a stable node of n pages carries (n − 1)/n of a page; see
    /// `Engine.attributedSharing(of:)`), in bytes. Unlike `pages_sharing`, two identical guests
    /// get the same figure.
    public var attributedSharingBytes = 0
    /// On hugetlbfs: how its confirmed zero pages fall on its huge pages; nil elsewhere or
    /// before the agent counted them.
    public var hugePageZeroes: HugePageZeroes?
    /// Why its zero pages could not be reclaimed in mode `zero` or `merge` (the same reasons
    /// as `reclaim.reason`, as if it were in such a mode); nil when they could.
    public var reasonIfReclaiming: String?

    /// Its savings (see ``Savings``), from the figures above.
    public var savings: Savings { Savings(self) }

    public init(
        name: String, uuid: String, state: String, mapped: Bool, reason: String? = nil, mode: PolicyMode,
        trustGroup: String? = nil, backend: String? = nil, counters: Counters = Counters(),
        regions: [RegionStatus] = [], facts: GuestFacts = GuestFacts(), reclaim: ReclaimStatus = ReclaimStatus(),
        kernelKSM: GuestKernelKSM? = nil
    ) {
        self.kernelKSM = kernelKSM
        self.name = name
        self.uuid = uuid
        self.state = state
        self.mapped = mapped
        self.reason = reason
        self.mode = mode
        self.trustGroup = trustGroup
        self.backend = backend
        self.regions = regions
        self.facts = facts
        self.counters = counters
        self.reclaim = reclaim
    }

    /// The guest's name and UUID.
    public var identity: GuestIdentity { GuestIdentity(name: name, uuid: uuid) }
}

/// The guest's wire form: snake_case keys, null for what it lacks; the kernel-named counters
/// and reclaim's totals at top level, `regions`, `facts`, `reclaim`, `huge_page_zeroes` and
/// `savings` (derived, ignored when read) nested. Name, UUID,
/// state, `mapped`, mode and the counters are required; the rest may be missing.
extension GuestStatus: Codable {
    public enum CodingKeys: String, CodingKey {
        case name, uuid, source, vmid, state, mapped, reason, mode, backend, regions, facts, reclaim
        case savings
        case trustGroup = "trust_group"
        case kernelKSM = "kernel_ksm"
        case privateRAM = "private_ram"
        case attributedSharingBytes = "sharing_attributed_bytes"
        case hugePageZeroes = "huge_page_zeroes"
        case reasonIfReclaiming = "reason_if_reclaiming"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(uuid, forKey: .uuid)
        try c.encode(source, forKey: .source)
        try c.encodeIfPresent(vmid, forKey: .vmid)
        try c.encode(state, forKey: .state)
        try c.encode(mapped, forKey: .mapped)
        try c.encode(reason, forKey: .reason)
        try c.encode(mode, forKey: .mode)
        try c.encode(trustGroup, forKey: .trustGroup)
        try c.encode(backend, forKey: .backend)
        try counters.encode(to: encoder)
        try c.encode(regions, forKey: .regions)
        try c.encode(facts, forKey: .facts)
        try reclaim.encodeTotals(to: encoder)
        try c.encode(reclaim, forKey: .reclaim)
        try c.encodeIfPresent(kernelKSM, forKey: .kernelKSM)
        try c.encode(privateRAM, forKey: .privateRAM)
        try c.encode(attributedSharingBytes, forKey: .attributedSharingBytes)
        try c.encode(hugePageZeroes, forKey: .hugePageZeroes)
        try c.encode(reasonIfReclaiming, forKey: .reasonIfReclaiming)
        // Derived, for readers of the JSON; not read back.
        try c.encode(savings, forKey: .savings)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            name: try c.decode(String.self, forKey: .name),
            uuid: try c.decode(String.self, forKey: .uuid),
            state: try c.decode(String.self, forKey: .state),
            mapped: try c.decode(Bool.self, forKey: .mapped),
            reason: try c.decodeIfPresent(String.self, forKey: .reason),
            mode: try c.decode(PolicyMode.self, forKey: .mode),
            trustGroup: try c.decodeIfPresent(String.self, forKey: .trustGroup),
            backend: try c.decodeIfPresent(String.self, forKey: .backend),
            counters: try Counters(from: decoder))
        source = try c.decode(.source, or: source)
        vmid = try c.decodeIfPresent(Int.self, forKey: .vmid)
        regions = try c.decode(.regions, or: regions)
        // A `"facts": null` is not a guest's facts: only a missing key takes the defaults.
        if c.contains(.facts) { facts = try c.decode(GuestFacts.self, forKey: .facts) }
        reclaim = try c.decode(.reclaim, or: reclaim)
        kernelKSM = try c.decodeIfPresent(GuestKernelKSM.self, forKey: .kernelKSM)
        privateRAM = try c.decode(.privateRAM, or: privateRAM)
        attributedSharingBytes = try c.decode(.attributedSharingBytes, or: attributedSharingBytes)
        hugePageZeroes = try c.decodeIfPresent(HugePageZeroes.self, forKey: .hugePageZeroes)
        reasonIfReclaiming = try c.decodeIfPresent(String.self, forKey: .reasonIfReclaiming)
    }
}

/// One RAM backend region of a guest, as mapped.
///
/// On the wire (its synthesized `Codable` form): every key, `path` null when unknown; only
/// `path` may be missing.
public struct RegionStatus: Sendable, Equatable, Codable {
    /// QEMU's memory-backend id (`pc.ram`, `ram-node0`, `memdimm0`).
    public var backend: String
    /// memfd, tmpfs file, hugetlbfs, disk file.
    public var kind: String
    /// The mapping's path in QEMU (`/memfd:...`, a mem-path file).
    @ExplicitNull public var path: String?
    /// The region's size in bytes, and in pages.
    public var bytes: Int
    public var pages: Int

    public init(backend: String, kind: String, path: String?, bytes: Int, pages: Int) {
        self.backend = backend
        self.kind = kind
        self.path = path
        self.bytes = bytes
        self.pages = pages
    }
}

import SamepageAgent
import SamepageCore

/// A JSON object key given by its name.
struct WireKey: CodingKey, ExpressibleByStringLiteral, Hashable {
    var stringValue: String
    var intValue: Int? { nil }

    init(_ name: String) { stringValue = name }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
    init(stringLiteral value: String) { stringValue = value }
}

typealias WireEncoding = KeyedEncodingContainer<WireKey>
typealias WireDecoding = KeyedDecodingContainer<WireKey>

// MARK: - Result values

extension GuestStatus: Codable {
    /// The wire object: snake_case keys, counters at top level, `regions` and `facts` nested.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: WireKey.self)
        try c.encode(name, forKey: "name")
        try c.encode(uuid, forKey: "uuid")
        try c.encode(state, forKey: "state")
        try c.encode(mapped, forKey: "mapped")
        try c.encode(reason, forKey: "reason")
        try c.encode(mode, forKey: "mode")
        try c.encode(trustGroup, forKey: "trust_group")
        try c.encode(backend, forKey: "backend")
        try counters.encode(to: encoder)
        var r = c.nestedUnkeyedContainer(forKey: "regions")
        for region in regions {
            var o = r.nestedContainer(keyedBy: WireKey.self)
            try o.encode(region.backend, forKey: "backend")
            try o.encode(region.kind, forKey: "kind")
            try o.encode(region.path, forKey: "path")
            try o.encode(region.bytes, forKey: "bytes")
            try o.encode(region.pages, forKey: "pages")
        }
        var f = c.nestedContainer(keyedBy: WireKey.self, forKey: "facts")
        try facts.encodeWire(into: &f)
        try reclaim.encodeFlat(into: &c)
        try c.encode(reclaim, forKey: "reclaim")
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: WireKey.self)
        self.init(
            name: try c.decode(String.self, forKey: "name"),
            uuid: try c.decode(String.self, forKey: "uuid"),
            state: try c.decode(String.self, forKey: "state"),
            mapped: try c.decode(Bool.self, forKey: "mapped"),
            reason: try c.decodeIfPresent(String.self, forKey: "reason"),
            mode: try c.decode(PolicyMode.self, forKey: "mode"),
            trustGroup: try c.decodeIfPresent(String.self, forKey: "trust_group"),
            backend: try c.decodeIfPresent(String.self, forKey: "backend"),
            counters: try Counters(from: decoder),
            regions: try c.decodeIfPresent([RegionStatus].self, forKey: "regions") ?? [],
            facts: c.contains("facts")
                ? try GuestFacts(wireFrom: c.nestedContainer(keyedBy: WireKey.self, forKey: "facts")) : GuestFacts(),
            reclaim: try c.decodeIfPresent(ReclaimStatus.self, forKey: "reclaim") ?? ReclaimStatus())
    }
}

extension GuestFacts {
    func encodeWire(into c: inout WireEncoding) throws {
        try c.encode(backing, forKey: "backing")
        try c.encode(access, forKey: "access")
        try c.encode(hugepages, forKey: "hugepages")
        try c.encode(hugepageSizesKiB, forKey: "hugepage_sizes_kib")
        try c.encode(preallocated, forKey: "preallocated")
        try c.encode(locked, forKey: "locked")
        try c.encode(assignedDevices, forKey: "assigned_devices")
        try c.encode(ivshmem, forKey: "ivshmem")
        try c.encode(persistentMemory, forKey: "persistent_memory")
        try c.encode(launchSecurity, forKey: "launch_security")
        try c.encode(vhostUser, forKey: "vhost_user")
        try c.encode(vhostUserBackends, forKey: "vhost_user_backends")
        try c.encode(otherMappers, forKey: "other_mappers")
        try c.encode(activeJob, forKey: "active_job")
        try c.encode(dmaDescriptors, forKey: "dma_descriptors")
        try c.encode(definitionUnknown, forKey: "definition_unknown")
    }

    /// Missing keys keep their defaults: facts grow over time.
    init(wireFrom c: WireDecoding) throws {
        self.init()
        backing = try c.decodeIfPresent(String.self, forKey: "backing") ?? backing
        access = try c.decodeIfPresent(String.self, forKey: "access")
        hugepages = try c.decodeIfPresent(Bool.self, forKey: "hugepages") ?? false
        hugepageSizesKiB = try c.decodeIfPresent([UInt64].self, forKey: "hugepage_sizes_kib") ?? []
        preallocated = try c.decodeIfPresent(Bool.self, forKey: "preallocated") ?? false
        locked = try c.decodeIfPresent(Bool.self, forKey: "locked") ?? false
        assignedDevices = try c.decodeIfPresent([String].self, forKey: "assigned_devices") ?? []
        ivshmem = try c.decodeIfPresent([String].self, forKey: "ivshmem") ?? []
        persistentMemory = try c.decodeIfPresent([String].self, forKey: "persistent_memory") ?? []
        launchSecurity = try c.decodeIfPresent(String.self, forKey: "launch_security")
        vhostUser = try c.decodeIfPresent([String].self, forKey: "vhost_user") ?? []
        vhostUserBackends = try c.decodeIfPresent([MapperProcess].self, forKey: "vhost_user_backends") ?? []
        otherMappers = try c.decodeIfPresent([MapperProcess].self, forKey: "other_mappers") ?? []
        activeJob = try c.decodeIfPresent(Bool.self, forKey: "active_job") ?? false
        dmaDescriptors = try c.decodeIfPresent([String].self, forKey: "dma_descriptors") ?? []
        definitionUnknown = try c.decodeIfPresent(Bool.self, forKey: "definition_unknown") ?? false
    }
}

extension DaemonStats: Codable {
    /// The wire object: the kernel-named counters, `run`, the tunables, and the daemon's
    /// state, all at top level.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: WireKey.self)
        try counters.encode(to: encoder)
        try run.encode(to: encoder)
        try tunables.encode(to: encoder)
        try c.encode(trackingBytes, forKey: "tracking_bytes")
        try c.encode(scanRate, forKey: "pages_scanned_per_second")
        try c.encode(connected, forKey: "connected")
        try c.encode(connectionError, forKey: "connection_error")
        try c.encode(guests, forKey: "guests")
        try c.encode(guestsMapped, forKey: "guests_mapped")
        try reclaim.encodeFlat(into: &c)
        try c.encode(reclaim, forKey: "reclaim")
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: WireKey.self)
        self.init(
            counters: try Counters(from: decoder), run: try RunMode(from: decoder), tunables: try Tunables(from: decoder),
            trackingBytes: try c.decode(Int.self, forKey: "tracking_bytes"),
            scanRate: try c.decodeIfPresent(Double.self, forKey: "pages_scanned_per_second") ?? 0,
            connected: try c.decode(Bool.self, forKey: "connected"),
            connectionError: try c.decodeIfPresent(String.self, forKey: "connection_error"),
            guests: try c.decodeIfPresent(Int.self, forKey: "guests") ?? 0,
            guestsMapped: try c.decodeIfPresent(Int.self, forKey: "guests_mapped") ?? 0,
            reclaim: try c.decodeIfPresent(ReclaimStatus.self, forKey: "reclaim") ?? ReclaimStatus())
    }
}

extension GuestPolicyInfo: Codable {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: WireKey.self)
        try c.encode(name, forKey: "name")
        try c.encode(uuid, forKey: "uuid")
        try c.encode(source, forKey: "source")
        var p = c.nestedContainer(keyedBy: WireKey.self, forKey: "policy")
        try p.encode(policy.mode, forKey: "mode")
        try p.encode(policy.trustGroup, forKey: "trust_group")
        try p.encode(policy.maxPages, forKey: "max_pages")
        try p.encode(policy.maxPauseMs, forKey: "max_pause_ms")
        try p.encode(policy.maxPauseMsPerMinute, forKey: "max_pause_ms_per_minute")
        try p.encode(policy.reclaimHugetlbfs, forKey: "reclaim_hugetlbfs")
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: WireKey.self)
        let p = try c.nestedContainer(keyedBy: WireKey.self, forKey: "policy")
        let defaults = GuestPolicy()
        self.init(
            name: try c.decode(String.self, forKey: "name"),
            uuid: try c.decodeIfPresent(String.self, forKey: "uuid"),
            source: try c.decodeIfPresent(String.self, forKey: "source"),
            policy: GuestPolicy(
                mode: try p.decode(PolicyMode.self, forKey: "mode"),
                trustGroup: try p.decodeIfPresent(String.self, forKey: "trust_group"),
                maxPages: try p.decodeIfPresent(Int.self, forKey: "max_pages") ?? defaults.maxPages,
                maxPauseMs: try p.decodeIfPresent(Int.self, forKey: "max_pause_ms") ?? defaults.maxPauseMs,
                maxPauseMsPerMinute: try p.decodeIfPresent(Int.self, forKey: "max_pause_ms_per_minute")
                    ?? defaults.maxPauseMsPerMinute,
                reclaimHugetlbfs: try p.decodeIfPresent(Bool.self, forKey: "reclaim_hugetlbfs")
                    ?? defaults.reclaimHugetlbfs))
    }
}

extension PolicyReloadReport: Codable {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: WireKey.self)
        try c.encode(errors, forKey: "errors")
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: WireKey.self)
        self.init(errors: try c.decode([String].self, forKey: "errors"))
    }
}

extension VersionInfo: Codable {
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: WireKey.self)
        try c.encode(protocolVersion, forKey: "protocol")
        try c.encode(daemon, forKey: "daemon")
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: WireKey.self)
        self.init(
            protocolVersion: try c.decode(Int.self, forKey: "protocol"),
            daemon: try c.decode(String.self, forKey: "daemon"))
    }
}

// MARK: - Results

extension ControlResult {
    /// Writes the result as the value of a response's `"result"`.
    func encodeWire(to encoder: any Encoder) throws {
        switch self {
        case .guests(let guests):
            var c = encoder.singleValueContainer()
            try c.encode(guests)
        case .guest(let guest):
            try guest.encode(to: encoder)
        case .stats(let stats):
            try stats.encode(to: encoder)
        case .run(let mode):
            try mode.encode(to: encoder)
        case .tunables(let tunables):
            try tunables.encode(to: encoder)
        case .policies(let policies):
            var c = encoder.singleValueContainer()
            try c.encode(policies)
        case .policyReload(let report):
            try report.encode(to: encoder)
        case .sharing(let matrix):
            var c = encoder.container(keyedBy: WireKey.self)
            try c.encode(matrix.guests.map(\.name), forKey: "guests")
            try c.encode(matrix.guests.map(\.uuid), forKey: "uuids")
            try c.encode(matrix.pages, forKey: "pages")
        case .version(let version):
            try version.encode(to: encoder)
        }
    }

    /// Reads the `"result"` of a response to `command`.
    init(wireFrom decoder: any Decoder, for command: ControlCommand) throws {
        switch command {
        case .list:
            self = .guests(try decoder.singleValueContainer().decode([GuestStatus].self))
        case .dominfo:
            self = .guest(try GuestStatus(from: decoder))
        case .stats:
            self = .stats(try DaemonStats(from: decoder))
        case .run:
            self = .run(try RunMode(from: decoder))
        case .tune:
            self = .tunables(try Tunables(from: decoder))
        case .policyShow:
            self = .policies(try decoder.singleValueContainer().decode([GuestPolicyInfo].self))
        case .policyReload:
            self = .policyReload(try PolicyReloadReport(from: decoder))
        case .sharing:
            let c = try decoder.container(keyedBy: WireKey.self)
            let names = try c.decode([String].self, forKey: "guests")
            let uuids = try c.decodeIfPresent([String].self, forKey: "uuids") ?? Array(repeating: "", count: names.count)
            let pages = try c.decode([[Int]].self, forKey: "pages")
            guard uuids.count == names.count, pages.count == names.count, pages.allSatisfy({ $0.count == names.count })
            else {
                throw DecodingError.dataCorruptedError(
                    forKey: "pages", in: c, debugDescription: "the sharing matrix is not square over its guests")
            }
            let guests = zip(names, uuids).map { GuestIdentity(name: $0, uuid: $1) }
            self = .sharing(SharingMatrix(guests: guests, pages: pages))
        case .version:
            self = .version(try VersionInfo(from: decoder))
        }
    }
}

extension ReclaimStatus {
    /// The reclaim counters also as top-level keys, next to the kernel-named ones.
    func encodeFlat(into c: inout WireEncoding) throws {
        try c.encode(zeroPagesReclaimed, forKey: "zero_pages_reclaimed")
        try c.encode(bytesReclaimed, forKey: "bytes_reclaimed")
        try c.encode(pauses, forKey: "pauses")
    }
}

/// What the agent does with a guest's memory (a policy file's `mode`).
///
/// The raw value is the mode's one name: in policy files, on the wire (`"mode": "merge"`,
/// its `Codable` form) and on the command line.
public enum PolicyMode: String, Sendable, Codable, CaseIterable {
    /// Never read.
    case off
    /// Scanned and accounted; never paused or changed.
    case report
    /// Zero pages found (and, later, reclaimed); no comparison with other pages.
    case zero
    /// Both: zero pages and cross-guest merging, within the guest's trust group.
    case merge

    /// Whether the guest's pages go into the stable and unstable trees.
    public var merges: Bool { self == .report || self == .merge }
    /// Whether the guest's zero pages may be given back (in pauses of the guest).
    public var reclaims: Bool { self == .zero || self == .merge }
}

/// How the agent treats one guest: a per-guest policy file's content.
///
/// The defaults, stated once in ``init(mode:trustGroup:maxPages:maxPauseMs:maxPauseMsPerMinute:reclaimHugetlbfs:)``,
/// are those of an empty policy file and of every key a reader does not find.
public struct GuestPolicy: Sendable, Equatable {
    /// What is done with the guest's memory (default off).
    public var mode: PolicyMode
    /// Guests are compared only with guests of the same group; nil is a group of its own.
    @ExplicitNull public var trustGroup: String?
    /// Cap on the guest's pages tracked as sharing; 0 = unlimited (the default).
    public var maxPages: Int
    /// Target length of one reclaim pause, in milliseconds (default 10).
    public var maxPauseMs: Int
    /// Duty cycle: paused milliseconds allowed per minute (default 200).
    public var maxPauseMsPerMinute: Int
    /// Reclaim zero pages of hugetlbfs backends too (a refault against an empty pool kills
    /// QEMU, so this is off unless asked for).
    public var reclaimHugetlbfs: Bool

    /// The policy's keys: on the wire and in policy files alike.
    public enum CodingKeys: String, CodingKey {
        case mode
        case trustGroup = "trust_group"
        case maxPages = "max_pages"
        case maxPauseMs = "max_pause_ms"
        case maxPauseMsPerMinute = "max_pause_ms_per_minute"
        case reclaimHugetlbfs = "reclaim_hugetlbfs"
    }

    /// A policy; what is not given takes its default (an empty policy file's).
    public init(
        mode: PolicyMode = .off, trustGroup: String? = nil, maxPages: Int = 0,
        maxPauseMs: Int = 10, maxPauseMsPerMinute: Int = 200, reclaimHugetlbfs: Bool = false
    ) {
        self.mode = mode
        self.trustGroup = trustGroup
        self.maxPages = maxPages
        self.maxPauseMs = maxPauseMs
        self.maxPauseMsPerMinute = maxPauseMsPerMinute
        self.reclaimHugetlbfs = reclaimHugetlbfs
    }
}

/// The policy's wire form (`policy.show`): every key (the synthesized encoding), `trust_group`
/// null when there is none. `mode` is required; other missing keys take their defaults.
extension GuestPolicy: Codable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(mode: try c.decode(PolicyMode.self, forKey: .mode))
        trustGroup = try c.decodeIfPresent(String.self, forKey: .trustGroup)
        maxPages = try c.decode(.maxPages, or: maxPages)
        maxPauseMs = try c.decode(.maxPauseMs, or: maxPauseMs)
        maxPauseMsPerMinute = try c.decode(.maxPauseMsPerMinute, or: maxPauseMsPerMinute)
        reclaimHugetlbfs = try c.decode(.reclaimHugetlbfs, or: reclaimHugetlbfs)
    }
}

/// The policy in force for one guest (`policy.show`).
///
/// On the wire (its synthesized `Codable` form): `name`, `uuid` and `source` (null when there
/// is none), and the ``GuestPolicy`` nested as `policy`.
public struct GuestPolicyInfo: Sendable, Equatable, Codable {
    public var name: String
    /// nil for a policy file whose guest the daemon has not seen.
    @ExplicitNull public var uuid: String?
    /// The file it came from; nil for the built-in default.
    @ExplicitNull public var source: String?
    public var policy: GuestPolicy

    public init(name: String, uuid: String?, source: String?, policy: GuestPolicy) {
        self.name = name
        self.uuid = uuid
        self.source = source
        self.policy = policy
    }
}

/// The outcome of `policy.reload`: one `file:line: message` per problem; empty when every
/// file was good. Guests whose file was rejected keep their last good policy.
///
/// On the wire: `{"errors": [...]}` (its synthesized `Codable` form).
public struct PolicyReloadReport: Sendable, Equatable, Codable {
    public var errors: [String]

    public init(errors: [String] = []) { self.errors = errors }
}

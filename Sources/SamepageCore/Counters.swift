/// The scanner's counters, with the kernel's names and meanings (`/sys/kernel/mm/ksm/*`).
///
/// Held globally and per slot. Globally, `pagesShared` is the number of stable nodes (merged
/// contents) and `pagesSharing` how many more sites share them, i.e. pages saved. Per slot, a
/// stable node is attributed to the slot of its representative page (the one future pages
/// are compared with, the analogue of the KSM page), so the per-slot counters add up to the
/// global ones except for nodes whose representative left and whose next member has not been
/// visited yet (``Engine/vacantNodes``).
public struct Counters: Sendable, Equatable {
    /// Stable nodes: distinct merged contents.
    public var pagesShared: Int = 0
    /// Pages merged into a stable node beyond its first: the pages sharing would save.
    public var pagesSharing: Int = 0
    /// Pages in the unstable tree: unchanged since the previous pass, no duplicate yet.
    public var pagesUnshared: Int = 0
    /// Tracked pages in neither tree nor zero: changing too fast, new, or waiting.
    public var pagesVolatile: Int = 0
    /// Completed passes over all slots (per slot: over that slot).
    public var fullScans: Int = 0
    /// Pages visited (read and classified).
    public var pagesScanned: Int = 0
    /// Pages passed over by smart scan.
    public var pagesSkipped: Int = 0
    /// Pages found all zero on two visits in a row: the candidates for reclaim.
    public var zeroPages: Int = 0
    /// Promotions refused because of `max_kernel_pages` or a slot's `max_pages`.
    public var mergesRefused: Int = 0

    public init() {}

    /// The counters' names, the kernel's, in a stable order: the one table that the JSON
    /// keys, the printed listings and the metrics' names all come from.
    public enum CodingKeys: String, CodingKey, CaseIterable, Sendable {
        case pagesShared = "pages_shared"
        case pagesSharing = "pages_sharing"
        case pagesUnshared = "pages_unshared"
        case pagesVolatile = "pages_volatile"
        case fullScans = "full_scans"
        case pagesScanned = "pages_scanned"
        case pagesSkipped = "pages_skipped"
        case zeroPages = "zero_pages"
        case mergesRefused = "merges_refused"

        /// The counter this name stands for.
        public var keyPath: WritableKeyPath<Counters, Int> {
            switch self {
            case .pagesShared: \.pagesShared
            case .pagesSharing: \.pagesSharing
            case .pagesUnshared: \.pagesUnshared
            case .pagesVolatile: \.pagesVolatile
            case .fullScans: \.fullScans
            case .pagesScanned: \.pagesScanned
            case .pagesSkipped: \.pagesSkipped
            case .zeroPages: \.zeroPages
            case .mergesRefused: \.mergesRefused
            }
        }
    }

    /// The counter named by `key`.
    public subscript(key: CodingKeys) -> Int {
        get { self[keyPath: key.keyPath] }
        set { self[keyPath: key.keyPath] = newValue }
    }

    /// The counters as (kernel name, value) pairs, in a stable order, for printing.
    public var named: [(String, Int)] { CodingKeys.allCases.map { ($0.rawValue, self[$0]) } }

    /// Adds another region's counters; full scans count the slowest region (the fewest).
    public mutating func accumulate(_ other: Counters, first: Bool) {
        for key in CodingKeys.allCases where key != .fullScans { self[key] += other[key] }
        fullScans = first ? other.fullScans : min(fullScans, other.fullScans)
    }
}

/// The counters' wire form: one key each, with the kernel's name, all required. An object
/// that holds counters (a guest, the daemon's stats) carries them as its own top-level keys,
/// by encoding them into its own encoder.
extension Counters: Codable {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        for key in CodingKeys.allCases { try container.encode(self[key], forKey: key) }
    }

    public init(from decoder: any Decoder) throws {
        self.init()
        let container = try decoder.container(keyedBy: CodingKeys.self)
        for key in CodingKeys.allCases { self[key] = try container.decode(Int.self, forKey: key) }
    }
}

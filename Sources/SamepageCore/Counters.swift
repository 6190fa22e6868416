/// The scanner's counters, with the kernel's names and meanings (`/sys/kernel/mm/ksm/*`).
///
/// Held globally and per slot. Globally, `pagesShared` is the number of stable nodes (merged
/// contents) and `pagesSharing` how many more sites share them, i.e. pages saved. Per slot, a
/// stable node is attributed to the slot of its representative page (the one future pages
/// are compared with, the analogue of the KSM page), so the per-slot counters add up to the
/// global ones except for nodes whose representative left and whose next member has not been
/// visited yet (``Engine/vacantNodes``).
public struct Counters: Sendable, Equatable, Codable {
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

    /// The JSON keys: the kernel's names.
    public enum CodingKeys: String, CodingKey, CaseIterable {
        case pagesShared = "pages_shared"
        case pagesSharing = "pages_sharing"
        case pagesUnshared = "pages_unshared"
        case pagesVolatile = "pages_volatile"
        case fullScans = "full_scans"
        case pagesScanned = "pages_scanned"
        case pagesSkipped = "pages_skipped"
        case zeroPages = "zero_pages"
        case mergesRefused = "merges_refused"
    }

    /// The counters as (kernel name, value) pairs, in a stable order, for printing.
    public var named: [(String, Int)] {
        [
            ("pages_shared", pagesShared), ("pages_sharing", pagesSharing),
            ("pages_unshared", pagesUnshared), ("pages_volatile", pagesVolatile),
            ("full_scans", fullScans), ("pages_scanned", pagesScanned),
            ("pages_skipped", pagesSkipped), ("zero_pages", zeroPages),
            ("merges_refused", mergesRefused),
        ]
    }
}

/// What ksmd reports in `/sys/kernel/mm/ksm`: each counter under the kernel's name, nil
/// where the running kernel has no such file.
///
/// Pages are base pages (4 KiB on x86-64). What KSM saves is ``pagesSharing`` (every mapping
/// of a KSM page but the first) plus ``ksmZeroPages``, less the memory of its rmap items;
/// ``generalProfit`` is the kernel's own account of that, in bytes, and may be negative.
public struct KernelKSMCounters: Sendable, Equatable {
    /// `pages_shared`: KSM pages in use (distinct merged contents).
    public var pagesShared: Int?
    /// `pages_sharing`: mappings of KSM pages beyond their first: pages saved.
    public var pagesSharing: Int?
    /// `pages_unshared`: pages unique but checked again each scan (the unstable tree).
    public var pagesUnshared: Int?
    /// `pages_volatile`: pages changing too fast to be placed in a tree.
    public var pagesVolatile: Int?
    /// `pages_scanned`: pages ksmd has scanned.
    public var pagesScanned: Int?
    /// `pages_skipped` (6.7): pages smart scan passed over.
    public var pagesSkipped: Int?
    /// `full_scans`: completed scans of every mergeable area.
    public var fullScans: Int?
    /// `ksm_zero_pages`: pages merged with the kernel's zero page under `use_zero_pages`.
    public var ksmZeroPages: Int?
    /// `general_profit` (6.4): bytes saved less the rmap items' memory; may be negative.
    public var generalProfit: Int?
    /// `stable_node_chains`: KSM pages that hit `max_page_sharing`.
    public var stableNodeChains: Int?
    /// `stable_node_dups`: duplicate KSM pages in those chains.
    public var stableNodeDups: Int?

    /// Counters; each not given is nil (not reported by the kernel).
    public init(
        pagesShared: Int? = nil, pagesSharing: Int? = nil, pagesUnshared: Int? = nil, pagesVolatile: Int? = nil,
        pagesScanned: Int? = nil, pagesSkipped: Int? = nil, fullScans: Int? = nil, ksmZeroPages: Int? = nil,
        generalProfit: Int? = nil, stableNodeChains: Int? = nil, stableNodeDups: Int? = nil
    ) {
        self.pagesShared = pagesShared
        self.pagesSharing = pagesSharing
        self.pagesUnshared = pagesUnshared
        self.pagesVolatile = pagesVolatile
        self.pagesScanned = pagesScanned
        self.pagesSkipped = pagesSkipped
        self.fullScans = fullScans
        self.ksmZeroPages = ksmZeroPages
        self.generalProfit = generalProfit
        self.stableNodeChains = stableNodeChains
        self.stableNodeDups = stableNodeDups
    }

    /// Each counter's file name and property: the one table the reader walks.
    static var files: [(name: String, keyPath: WritableKeyPath<KernelKSMCounters, Int?>)] {
        [
            ("pages_shared", \.pagesShared), ("pages_sharing", \.pagesSharing),
            ("pages_unshared", \.pagesUnshared), ("pages_volatile", \.pagesVolatile),
            ("pages_scanned", \.pagesScanned), ("pages_skipped", \.pagesSkipped), ("full_scans", \.fullScans),
            ("ksm_zero_pages", \.ksmZeroPages), ("general_profit", \.generalProfit),
            ("stable_node_chains", \.stableNodeChains), ("stable_node_dups", \.stableNodeDups),
        ]
    }
}

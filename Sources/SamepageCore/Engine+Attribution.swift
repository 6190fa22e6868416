// What each guest's pages are worth to sharing, attributed fairly, and how its zero pages fall
// on huge pages. Both walk rmap items, so the agent asks for them now and then (not at every
// publish) and on its own thread; neither changes the engine.
//
// **Fair attribution.** The kernel-named per-slot counters follow ksm.c: a stable node counts
// as `pages_shared` for the slot holding its representative and as `pages_sharing` for the
// others, so of two identical guests the one that happened to hold the representatives shows
// far less "sharing" than the other, although the two are symmetrical. What a node saves is
// not any one member's: a node with n member pages keeps one frame for n pages and saves
// n − 1. Attributed fairly, each member page carries (n − 1)/n of a page, so a slot with m of
// the node's members is attributed m·(n − 1)/n pages of it, whichever page is the
// representative. Summed over a slot's nodes:
//
//     attributed(slot) = Σ over stable nodes: m_slot(node) · (n(node) − 1) / n(node)
//
// The attributions of all slots add up to the global `pages_sharing` (Σ (n − 1)); a node
// whose members are all in one guest is attributed to that guest alone.

extension Engine {
    /// For groups of slots (the regions of each guest): the pages sharing saves, attributed
    /// fairly (see the top of this file): each stable-node member page carries (n − 1)/n of a
    /// page, n being its node's members. Slots that are gone count nothing.
    ///
    /// - Complexity: one walk over the groups' rmap items.
    public func attributedSharing(of groups: [[SlotID]]) -> [Double] {
        let nodes = stable.nodes
        return groups.map { ids in
            var sum = 0.0
            forEachStablePage(of: ids) { node in
                let n = Double(nodes[node].members)
                if n > 0 { sum += (n - 1) / n }
            }
            return sum
        }
    }

    /// Calls `body` with the stable node of each page of `ids` that is in the stable tree, slot
    /// by slot in order, pages in address order. Slots that are gone have none.
    func forEachStablePage(of ids: [SlotID], _ body: (_ node: Int) -> Void) {
        for id in ids {
            guard let slot = slot(id) else { continue }
            for case let chunk? in slot.chunks {
                let words = chunk.words
                for i in 0..<RmapChunk.pages {
                    let w = RmapWord(raw: words[i])
                    guard w.isTracked && w.kind == .stable else { continue }
                    body(Int(w.node))
                }
            }
        }
    }

    /// How a slot's confirmed zero pages (`zero_pages`) fall on huge pages of
    /// `pagesPerHugePage` base pages, aligned to the slot's start; nil for a slot that is gone.
    ///
    /// - Complexity: one walk over the slot's rmap items.
    public func hugePageZeroes(of id: SlotID, pagesPerHugePage: Int) -> HugePageZeroes? {
        guard let slot = slot(id), pagesPerHugePage > 0 else { return nil }
        var result = HugePageZeroes(pagesPerHugePage: pagesPerHugePage, hugePages: slot.pageCount / pagesPerHugePage)
        var zeroes = 0
        var page = 0
        // Whole huge pages only: a tail shorter than one is not a huge page.
        let end = result.hugePages * pagesPerHugePage
        while page < end {
            let chunk = slot.chunks[page >> RmapChunk.shift]
            if let chunk, RmapWord(raw: chunk.words[page & (RmapChunk.pages - 1)]).zeroConfirmed { zeroes += 1 }
            page += 1
            if page % pagesPerHugePage == 0 {
                result.add(zeroBasePages: zeroes)
                zeroes = 0
            }
        }
        return result
    }
}

/// How a region's confirmed zero pages fall on its huge pages: those all zero (a punch gives
/// each back to the pool whole) and those partly zero, whose zero base pages nothing can give
/// back while the rest of the huge page is in use (stranded).
public struct HugePageZeroes: Sendable, Equatable, Codable {
    /// Base pages (4 KiB) per huge page: 512 for 2 MiB pages.
    public var pagesPerHugePage: Int
    /// Huge pages in the region.
    public var hugePages: Int
    /// Huge pages whose every base page is a confirmed zero page.
    public var allZero = 0
    /// Huge pages with some confirmed zero base pages, not all.
    public var partlyZero = 0
    /// The confirmed zero base pages inside the partly zero huge pages: stranded.
    public var strandedZeroPages = 0

    /// Counts of the values given; none zero by default.
    public init(pagesPerHugePage: Int, hugePages: Int, allZero: Int = 0, partlyZero: Int = 0, strandedZeroPages: Int = 0) {
        self.pagesPerHugePage = pagesPerHugePage
        self.hugePages = hugePages
        self.allZero = allZero
        self.partlyZero = partlyZero
        self.strandedZeroPages = strandedZeroPages
    }

    /// Counts one huge page that holds `zeroBasePages` confirmed zero base pages.
    public mutating func add(zeroBasePages: Int) {
        if zeroBasePages == pagesPerHugePage {
            allZero += 1
        } else if zeroBasePages > 0 {
            partlyZero += 1
            strandedZeroPages += zeroBasePages
        }
    }

    /// Adds another region's counts (of the same huge page size) for a guest's total.
    public mutating func accumulate(_ other: HugePageZeroes) {
        hugePages += other.hugePages
        allZero += other.allZero
        partlyZero += other.partlyZero
        strandedZeroPages += other.strandedZeroPages
    }

    public enum CodingKeys: String, CodingKey {
        case hugePages = "huge_pages"
        case pagesPerHugePage = "pages_per_huge_page"
        case allZero = "all_zero"
        case partlyZero = "partly_zero"
        case strandedZeroPages = "stranded_zero_pages"
    }
}

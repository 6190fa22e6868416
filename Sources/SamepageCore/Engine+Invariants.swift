// The invariants, checked against a full walk of every rmap item: every count the engine keeps
// as it goes (per chunk, per slot, global, per stable node) equals what the walk finds, nodes
// are findable and within their limits, no member sits in another trust group's node or in a
// slot that does not merge. The tests run this after every batch; it is never on a hot path.

extension Engine {
    /// Checks the trees and counters against a full walk of every rmap item. Returns the
    /// violations found; empty when all hold. For tests: it walks everything.
    public func invariantViolations() -> [String] {
        var problems: [String] = []
        var members = [UInt32: Int]()
        var g = (tracked: 0, members: 0, unshared: 0, zero: 0)
        var slotsTally = Tally()
        for case let slot? in slots {
            var s = (tracked: 0, members: 0, owned: 0, unshared: 0, zero: 0)
            for (c, chunk) in slot.chunks.enumerated() {
                guard let chunk else { continue }
                var inChunk = 0
                for i in 0..<RmapChunk.pages {
                    let w = RmapWord(raw: chunk.words[i])
                    guard w.isTracked else { continue }
                    let page = c << RmapChunk.shift | i
                    if page >= slot.pageCount { problems.append("\(slot.id): item past the end at page \(page)") }
                    inChunk += 1
                    s.tracked += 1
                    switch w.kind {
                    case .stable:
                        s.members += 1
                        members[w.node, default: 0] += 1
                        let node = stable[w.node]
                        if !node.isLive { problems.append("\(slot.id) page \(page): member of dead node \(w.node)") }
                        if node.group != slot.group { problems.append("\(slot.id) page \(page): node \(w.node) of another trust group") }
                        if !slot.options.merging { problems.append("\(slot.id) page \(page): merged in a non-merging slot") }
                        if node.repSlot == UInt32(slot.id.index) && node.repPage == UInt32(page) { s.owned += 1 }
                    case .unstable: s.unshared += 1
                    case .zero: if w.zeroConfirmed { s.zero += 1 }
                    case .none: break
                    }
                }
                if inChunk != Int(slot.chunkTracked[c]) { problems.append("\(slot.id) chunk \(c): tracked \(slot.chunkTracked[c]), walked \(inChunk)") }
                if inChunk == 0 { problems.append("\(slot.id) chunk \(c): allocated but empty") }
            }
            let t = slot.tally
            if (s.tracked, s.members, s.owned, s.unshared, s.zero) != (t.tracked, t.members, slot.owned, t.unshared, t.zeroConfirmed) {
                problems.append("\(slot.id): counters (tracked \(t.tracked), members \(t.members), owned \(slot.owned), unshared \(t.unshared), zero \(t.zeroConfirmed)) but walked \(s)")
            }
            slotsTally.tracked += t.tracked; slotsTally.members += t.members
            slotsTally.unshared += t.unshared; slotsTally.zeroConfirmed += t.zeroConfirmed
            slotsTally.pagesScanned += t.pagesScanned; slotsTally.pagesSkipped += t.pagesSkipped
            slotsTally.mergesRefused += t.mergesRefused
            if slot.options.maxPages != 0 && slot.members > slot.options.maxPages {
                problems.append("\(slot.id): \(slot.members) pages sharing over its cap \(slot.options.maxPages)")
            }
            g.tracked += s.tracked; g.members += s.members; g.unshared += s.unshared; g.zero += s.zero
        }
        if (g.tracked, g.members, g.unshared, g.zero) != (tally.tracked, tally.members, tally.unshared, tally.zeroConfirmed) {
            problems.append("global counters (tracked \(tally.tracked), members \(tally.members), unshared \(tally.unshared), zero \(tally.zeroConfirmed)) but walked \(g)")
        }
        // Global == sum of the slots: the page counts exactly; the event counts at least (a
        // slot that left takes its share out of the slots, not out of the engine's history).
        if (slotsTally.tracked, slotsTally.members, slotsTally.unshared, slotsTally.zeroConfirmed)
            != (tally.tracked, tally.members, tally.unshared, tally.zeroConfirmed)
        {
            problems.append("global page counts \(tally) are not the sum of the slots' \(slotsTally)")
        }
        if tally.pagesScanned < slotsTally.pagesScanned || tally.pagesSkipped < slotsTally.pagesSkipped
            || tally.mergesRefused < slotsTally.mergesRefused
        {
            problems.append("global scan counts \(tally) below the sum of the slots' \(slotsTally)")
        }
        var live = 0
        for (n, node) in stable.nodes.enumerated() where node.isLive {
            live += 1
            let n = UInt32(n)
            if members[n, default: 0] != Int(node.members) {
                problems.append("node \(n): \(node.members) members, walked \(members[n, default: 0])")
            }
            if tunables.maxPageSharing != 0 && node.members > UInt32(tunables.maxPageSharing) {
                problems.append("node \(n): \(node.members) members over max_page_sharing")
            }
            if !stable.isIndexed(n) { problems.append("node \(n): not findable in the stable index") }
            if !node.isVacant {
                let rep = slots[Int(node.repSlot)]
                let page = Int(node.repPage)
                let word = rep?.chunks[page >> RmapChunk.shift].map { RmapWord(raw: $0.words[page & (RmapChunk.pages - 1)]) }
                if word != RmapWord.stable(node: n) { problems.append("node \(n): representative is not a member") }
            }
        }
        if live != stable.liveCount || stable.indexedCount != live {
            problems.append("stable tree: \(stable.liveCount) counted, \(live) live, \(stable.indexedCount) indexed")
        }
        for entry in unstable.entries {
            let index = UnstableTree.slot(of: entry)
            if index >= slots.count { problems.append("unstable entry for slot index \(index) that never existed") }
        }
        if tally.volatile < 0 { problems.append("negative pages_volatile") }
        return problems
    }
}

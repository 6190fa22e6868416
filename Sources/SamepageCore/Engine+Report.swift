// What the engine tells: the kernel-named counters, globally and per slot, the sharing
// matrix, and the bytes it holds for tracking. The counters are kept as the scan goes, in the
// engine's and each slot's `Tally` (Tally.swift), so reading them costs nothing; the sharing
// matrix and the tracking bytes walk everything and say so.

extension Engine {

    /// The global counters, with the kernel's names.
    public var counters: Counters { tally.counters(pagesShared: stable.liveCount) }

    /// One slot's counters; nil for a slot that is gone.
    public func counters(for id: SlotID) -> Counters? { slot(id)?.counters }

    /// Stable nodes whose representative left and whose next member has not been visited
    /// yet. Per-slot `pages_shared` add up to the global one minus this.
    public var vacantNodes: Int { stable.nodes.reduce(0) { $0 + ($1.isLive && $1.isVacant ? 1 : 0) } }

    /// Pages with an rmap item (ksm.c's `ksm_rmap_items`).
    public var rmapItems: Int { tally.tracked }

    /// Bytes the engine holds for tracking: rmap chunks, tree nodes and tables, slot arrays.
    public var trackingBytes: Int {
        var bytes = stable.trackingBytes + unstable.trackingBytes
        for case let slot? in slots {
            bytes += slot.chunks.capacity * MemoryLayout<RmapChunk?>.stride + slot.chunkTracked.capacity * 2
            for case .some in slot.chunks { bytes += RmapChunk.byteCount }
        }
        return bytes
    }

    /// For each pair of slots, how many stable nodes have members in both; the diagonal holds
    /// each slot's own stable-node memberships. Computed by one walk over all rmap items.
    public func sharingMatrix() -> [SlotID: [SlotID: Int]] {
        let ids = Dictionary(uniqueKeysWithValues: scanList.map { (slots[$0]!.id, slots[$0]!.id) })
        return sharingMatrix(groupedBy: ids)
    }

    /// The same for groups of slots (the regions of one guest): how many stable nodes have
    /// members in both groups, each node counted once per pair of groups. Slots not in
    /// `groups` are left out.
    public func sharingMatrix<Key: Hashable>(groupedBy groups: [SlotID: Key]) -> [Key: [Key: Int]] {
        var nodeMembers: [UInt32: Set<Key>] = [:]
        for case let slot? in slots {
            guard let key = groups[slot.id] else { continue }
            for case let chunk? in slot.chunks {
                for i in 0..<RmapChunk.pages {
                    let w = RmapWord(raw: chunk.words[i])
                    if w.isTracked && w.kind == .stable { nodeMembers[w.node, default: []].insert(key) }
                }
            }
        }
        var matrix: [Key: [Key: Int]] = [:]
        for (_, members) in nodeMembers {
            for a in members {
                for b in members { matrix[a, default: [:]][b, default: 0] += 1 }
            }
        }
        return matrix
    }
}

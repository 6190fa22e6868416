// What the engine tells: the kernel-named counters, globally and per slot, and the bytes it
// holds for tracking (the sharing matrix has a file of its own, Engine+Sharing.swift). The
// counters are kept as the scan goes, in the engine's and each slot's `Tally` (Tally.swift), so
// reading them costs nothing; the tracking bytes walk every slot and say so.

extension Engine {

    /// The global counters, with the kernel's names.
    public var counters: Counters { tally.counters(pagesShared: stable.liveCount) }

    /// One slot's counters; nil for a slot that is gone.
    public func counters(for id: SlotID) -> Counters? { slot(id)?.counters }

    /// The counters of several slots (a guest's regions) added up, as
    /// ``Counters/accumulate(_:first:)`` adds them; slots that are gone count nothing.
    public func counters(summing ids: [SlotID]) -> Counters {
        var sum = Counters()
        for (i, id) in ids.enumerated() {
            if let c = counters(for: id) { sum.accumulate(c, first: i == 0) }
        }
        return sum
    }

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
}

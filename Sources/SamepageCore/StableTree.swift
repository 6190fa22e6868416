/// A merged content: the analogue of ksm.c's stable node with its KSM page.
///
/// Guest pages are not write-protected, so a node does not own a page whose content is
/// guaranteed; it records the content's full hash and one *representative* member, the page
/// that candidates are compared with before they may join. When the representative is found
/// changed, the node becomes vacant until its next unchanged member is visited. A node whose
/// members have all changed or gone is dissolved.
@usableFromInline
struct StableNode {
    var hash: UInt64
    var group: UInt32
    var members: UInt32
    /// Slot index of the representative, or ``StableNode/vacant``.
    var repSlot: UInt32
    var repPage: UInt32

    static let vacant = UInt32.max
    var isVacant: Bool { repSlot == StableNode.vacant }
    var isLive: Bool { members > 0 }
}

/// Mixes a 64-bit content hash with a trust group into a table key: different groups land in
/// different buckets, and matches are still checked against the group itself.
@inline(__always)
func treeKey(hash: UInt64, group: UInt32) -> UInt64 {
    var x = hash ^ (UInt64(group) &* 0x9E37_79B9_7F4A_7C15)
    x ^= x >> 29
    x &*= 0xBF58_476D_1CE4_E5B9
    x ^= x >> 32
    return x
}

/// The stable tree: live nodes, indexed by (hash, trust group).
///
/// ksm.c sorts its stable tree by live page content; here it is an open-addressing hash table
/// (linear probing, backward-shift deletion) of node indexes keyed by ``treeKey(hash:group:)``.
/// Several nodes may share a key: a hash collision between different contents, or siblings of
/// one content when `max_page_sharing` filled a node.
@usableFromInline
struct StableTree {
    private(set) var nodes: [StableNode] = []
    private var freeNodes: [UInt32] = []
    /// Node index + 1, 0 for an empty bucket.
    private var buckets: [UInt32] = Array(repeating: 0, count: 64)
    private(set) var liveCount = 0

    var mask: Int { buckets.count - 1 }

    @inline(__always) func home(_ node: StableNode) -> Int {
        Int(truncatingIfNeeded: treeKey(hash: node.hash, group: node.group)) & mask
    }

    /// Where a probe for (hash, group) starts; pass it to ``nextCandidate(_:hash:group:)``.
    @inline(__always) func probeStart(hash: UInt64, group: UInt32) -> Int {
        Int(truncatingIfNeeded: treeKey(hash: hash, group: group)) & mask
    }

    /// The next live node filed under (hash, group) at or after bucket `i`, advancing `i`
    /// past it; nil at the end of the probe run. Nodes may be changed between calls, but not
    /// dissolved or inserted.
    @inline(__always)
    func nextCandidate(_ i: inout Int, hash: UInt64, group: UInt32) -> UInt32? {
        while true {
            let b = buckets[i]
            if b == 0 { return nil }
            i = (i + 1) & mask
            let node = nodes[Int(b - 1)]
            if node.hash == hash && node.group == group && node.isLive { return b - 1 }
        }
    }

    /// Visits the nodes filed under (hash, group), in probe order, until `body` returns false.
    @inline(__always)
    func forEachCandidate(hash: UInt64, group: UInt32, _ body: (UInt32) -> Bool) {
        var i = Int(truncatingIfNeeded: treeKey(hash: hash, group: group)) & mask
        while true {
            let b = buckets[i]
            if b == 0 { return }
            let n = b - 1
            let node = nodes[Int(n)]
            if node.hash == hash && node.group == group && node.isLive {
                if !body(n) { return }
            }
            i = (i + 1) & mask
        }
    }

    subscript(node: UInt32) -> StableNode {
        @inline(__always) get { nodes[Int(node)] }
        @inline(__always) _modify { yield &nodes[Int(node)] }
    }

    /// Files a new node with two members and the given representative.
    mutating func insert(hash: UInt64, group: UInt32, repSlot: UInt32, repPage: UInt32) -> UInt32 {
        let node = StableNode(hash: hash, group: group, members: 2, repSlot: repSlot, repPage: repPage)
        let n: UInt32
        if let free = freeNodes.popLast() {
            n = free
            nodes[Int(n)] = node
        } else {
            n = UInt32(nodes.count)
            nodes.append(node)
        }
        liveCount += 1
        if (liveCount + 1) * 4 > buckets.count * 3 { grow() }
        place(n)
        return n
    }

    private mutating func place(_ n: UInt32) {
        var i = home(nodes[Int(n)])
        while buckets[i] != 0 { i = (i + 1) & mask }
        buckets[i] = n + 1
    }

    private mutating func grow() {
        let old = buckets
        buckets = Array(repeating: 0, count: old.count * 2)
        for b in old where b != 0 { place(b - 1) }
    }

    /// Removes a node whose last member left.
    mutating func dissolve(_ n: UInt32) {
        precondition(nodes[Int(n)].members == 0, "dissolving a node with members")
        var i = home(nodes[Int(n)])
        while buckets[i] != n + 1 {
            precondition(buckets[i] != 0, "stable node \(n) missing from its index")
            i = (i + 1) & mask
        }
        // Backward-shift deletion: pull later entries of the probe run into the gap.
        var j = i
        while true {
            j = (j + 1) & mask
            let b = buckets[j]
            if b == 0 { break }
            let k = home(nodes[Int(b - 1)])
            let inRange = i <= j ? (i < k && k <= j) : (i < k || k <= j)
            if !inRange {
                buckets[i] = b
                i = j
            }
        }
        buckets[i] = 0
        nodes[Int(n)].repSlot = StableNode.vacant
        freeNodes.append(n)
        liveCount -= 1
    }

    /// Whether node `n` is filed exactly once, where a lookup of its key finds it.
    func isIndexed(_ n: UInt32) -> Bool {
        var found = 0
        for b in buckets where b == n + 1 { found += 1 }
        guard found == 1 else { return false }
        var reachable = false
        let node = nodes[Int(n)]
        forEachCandidate(hash: node.hash, group: node.group) { c in
            if c == n { reachable = true; return false }
            return true
        }
        return reachable
    }

    var indexedCount: Int { buckets.reduce(0) { $0 + ($1 == 0 ? 0 : 1) } }

    mutating func removeAll() {
        nodes = []
        freeNodes = []
        buckets = Array(repeating: 0, count: 64)
        liveCount = 0
    }

    var trackingBytes: Int {
        nodes.capacity * MemoryLayout<StableNode>.stride + freeNodes.capacity * 4 + buckets.capacity * 4
    }
}

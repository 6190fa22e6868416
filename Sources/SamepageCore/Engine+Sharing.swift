// The sharing matrix: for each pair of guests (groups of slots), how many stable nodes have
// members in both. It answers the control API's `sharing`, on the engine's thread, so its cost
// is scanning time taken from every guest.
//
// A node's contribution is one to every cell (a, b) of the groups it has members in, so a node
// with members in m groups touches m² cells: on 64 clones of one image every common page is a
// node with members in all 64, and adding up node by node costs 4,096 cell updates per node,
// growing with the square of the fleet while the pages grow with the fleet. But nodes with
// the same set of groups add the same ones to the same cells, and a fleet has few such sets
// (the clones' common pages all have one), so the sets are counted first and each distinct
// set is added once, times its count. What is left grows with the rmap items walked.

extension Engine {
    /// For groups of slots in a given order (the regions of each guest): `result[i][j]` counts
    /// the stable nodes with members in both `groups[i]` and `groups[j]`, each node once per
    /// pair; the diagonal, the nodes with members in the group. Slots that are gone count
    /// nothing; a slot should be in one group only.
    ///
    /// - Complexity: two walks over the groups' rmap items, O(stable nodes) for the tables,
    ///   and O(m²) for each distinct set of m groups that nodes have members in.
    public func sharingMatrix(of groups: [[SlotID]]) -> [[Int]] {
        let n = groups.count
        let nodeCount = stable.nodes.count
        // Each (node, group) membership once, however many pages of the group are in the node:
        // a group's slots are walked one after the other, so the last group seen per node tells.
        var lastGroup = [Int32](repeating: -1, count: nodeCount)
        func forEachMembership(_ body: (_ node: Int, _ group: Int32) -> Void) {
            for (g, ids) in groups.enumerated() {
                let group = Int32(g)
                forEachStablePage(of: ids) { node in
                    if lastGroup[node] != group {
                        lastGroup[node] = group
                        body(node, group)
                    }
                }
            }
        }
        // Each node's groups, ascending, in one array: counted, then placed (a counting sort).
        // 32-bit offsets: memberships are at most the rmap items, and this is transient memory
        // of the daemon's (12 bytes per stable node and 4 per membership).
        var start = [Int32](repeating: 0, count: nodeCount + 1)
        forEachMembership { node, _ in start[node + 1] += 1 }
        for node in 0..<nodeCount { start[node + 1] += start[node] }
        var members = [Int32](repeating: 0, count: Int(start[nodeCount]))
        var next = start
        lastGroup.withUnsafeMutableBufferPointer { $0.update(repeating: -1) }
        forEachMembership { node, group in
            members[Int(next[node])] = group
            next[node] += 1
        }
        // The distinct sets of groups, with how many nodes have each (slices share `members`).
        var sets: [ArraySlice<Int32>: Int] = [:]
        for node in 0..<nodeCount where start[node + 1] > start[node] {
            sets[members[Int(start[node])..<Int(start[node + 1])], default: 0] += 1
        }
        var cells = [Int](repeating: 0, count: n * n)
        for (set, count) in sets {
            for a in set {
                let row = Int(a) * n
                for b in set { cells[row + Int(b)] += count }
            }
        }
        return (0..<n).map { Array(cells[$0 * n..<($0 + 1) * n]) }
    }

    /// The same for groups of slots named by key (the regions of one guest, by its UUID):
    /// how many stable nodes have members in both groups, each node counted once per pair of
    /// groups; pairs that share nothing are left out. Slots not in `groups` are left out.
    public func sharingMatrix<Key: Hashable>(groupedBy groups: [SlotID: Key]) -> [Key: [Key: Int]] {
        var keys: [Key] = []
        var index: [Key: Int] = [:]
        var slotsOf: [[SlotID]] = []
        for (id, key) in groups {
            if index[key] == nil {
                index[key] = keys.count
                keys.append(key)
                slotsOf.append([])
            }
            slotsOf[index[key]!].append(id)
        }
        let dense = sharingMatrix(of: slotsOf)
        var matrix: [Key: [Key: Int]] = [:]
        for (a, row) in dense.enumerated() {
            for (b, count) in row.enumerated() where count > 0 { matrix[keys[a], default: [:]][keys[b]] = count }
        }
        return matrix
    }

    /// For each pair of slots, how many stable nodes have members in both; the diagonal holds
    /// each slot's own stable-node memberships.
    public func sharingMatrix() -> [SlotID: [SlotID: Int]] {
        let ids = Dictionary(uniqueKeysWithValues: scanList.map { (slots[$0]!.id, slots[$0]!.id) })
        return sharingMatrix(groupedBy: ids)
    }
}

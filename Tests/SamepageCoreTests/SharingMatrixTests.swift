import Testing
@testable import SamepageCore
import TestSupport

/// The sharing matrix against a reference that adds node by node (a set of groups per stable
/// node, one to every pair of them), and against counts worked out from the contents.
@Suite("Sharing matrix")
struct SharingMatrixTests {
    /// The straightforward matrix: every stable node's set of groups, each pair counted.
    static func reference(_ engine: Engine, groups: [[SlotID]]) -> [[Int]] {
        var nodeGroups: [UInt32: Set<Int>] = [:]
        for (g, ids) in groups.enumerated() {
            for id in ids {
                for case let chunk? in engine.slot(id)!.chunks {
                    for i in 0..<RmapChunk.pages {
                        let w = RmapWord(raw: chunk.words[i])
                        if w.isTracked && w.kind == .stable { nodeGroups[w.node, default: []].insert(g) }
                    }
                }
            }
        }
        var matrix = Array(repeating: Array(repeating: 0, count: groups.count), count: groups.count)
        for (_, set) in nodeGroups {
            for a in set { for b in set { matrix[a][b] += 1 } }
        }
        return matrix
    }

    @Test("Random fleets, slots grouped at random: the same matrix as node by node", arguments: 0..<25)
    func matchesReference(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let fleet = randomFleet(&rng, slots: 2...9, pages: 0...300)
        let trustGroups = fleet.map { _ in Int.random(in: 0..<2, using: &rng) }
        let h = try Harness(fleet, groups: trustGroups, tunables: Tunables(pagesToScan: 500, maxPageSharing: 4, smartScan: false))
        h.scan(passes: 2)
        // Guests of one to three slots each, the slots in random order.
        var groups: [[SlotID]] = []
        for id in h.ids.shuffled(using: &rng) {
            if groups.isEmpty || groups[groups.count - 1].count >= Int.random(in: 1...3, using: &rng) { groups.append([]) }
            groups[groups.count - 1].append(id)
        }
        let matrix = h.engine.sharingMatrix(of: groups)
        #expect(matrix == Self.reference(h.engine, groups: groups))
        // The keyed form agrees, without the pairs that share nothing.
        var owner: [SlotID: Int] = [:]
        for (g, ids) in groups.enumerated() { for id in ids { owner[id] = g } }
        let keyed = h.engine.sharingMatrix(groupedBy: owner)
        for a in groups.indices {
            for b in groups.indices { #expect(keyed[a]?[b] == (matrix[a][b] == 0 ? nil : matrix[a][b])) }
        }
    }

    /// 12 clones of two regions each: 50 contents in every guest, 20 in the 4 guests of each
    /// of 3 roles, one content in both regions of one guest only, and unique pages.
    @Test("Clones: the common pages in every cell, a role's pages between its guests, a guest's own on its diagonal")
    func clones() throws {
        let guests = 12
        var regions: [FakeRegion] = []
        for g in 0..<guests {
            let own = ContentID(9_000 + g)
            let common = (1...50).map { ContentID($0) }
            let role = (0..<20).map { ContentID(1_000 + (g % 3) * 100 + $0) }
            let unique = (0..<10).map { ContentID(100_000 + g * 100 + $0) }
            regions.append(FakeRegion(common + [own, 0, nil]))
            regions.append(FakeRegion(role + unique + [own, own]))
        }
        let h = try Harness(regions, tunables: Tunables(pagesToScan: 1_000, maxPageSharing: 0, smartScan: false))
        h.scan(passes: 2)
        let groups = (0..<guests).map { [h.ids[2 * $0], h.ids[2 * $0 + 1]] }
        let matrix = h.engine.sharingMatrix(of: groups)
        for a in 0..<guests {
            for b in 0..<guests {
                let expected = a == b ? 50 + 20 + 1 : 50 + (a % 3 == b % 3 ? 20 : 0)
                #expect(matrix[a][b] == expected, "guests \(a), \(b)")
            }
        }
        // A group whose slot is gone counts nothing; the others are unchanged.
        h.engine.removeSlot(h.ids[0])
        h.engine.removeSlot(h.ids[1])
        let after = h.engine.sharingMatrix(of: groups)
        #expect(after[0] == Array(repeating: 0, count: guests))
        #expect(after[1][2] == 50 + (1 % 3 == 2 % 3 ? 20 : 0))
        #expect(h.engine.sharingMatrix(of: []) == [])
    }
}

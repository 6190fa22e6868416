import Testing
@testable import SamepageCore

/// Fair attribution of sharing and huge-page zero counts, against figures worked out by hand
/// from the pages' contents.
@Suite("Attribution")
struct AttributionTests {
    /// Two guests that share contents 1–4 once each (nodes of 2 pages: each saves 1, half a
    /// page to each guest), and content 5 three times in A and once in B (a node of 4 pages
    /// that saves 3: 3 × 3/4 = 2.25 to A, 0.75 to B). A: 2 + 2.25 = 4.25; B: 2 + 0.75 = 2.75.
    @Test("Two guests: each shared page carries (n − 1)/n of a page, whoever holds the representative")
    func evenSplit() throws {
        let a = FakeRegion([1, 2, 3, 4, 5, 5, 5, 100, 101])
        let b = FakeRegion([1, 2, 3, 4, 5, 200])
        let h = try Harness([a, b], tunables: Tunables(pagesToScan: 1_000, maxPageSharing: 0, smartScan: false))
        h.scan(passes: 3)
        let shares = h.engine.attributedSharing(of: [[h.ids[0]], [h.ids[1]]])
        #expect(shares == [4.25, 2.75])
        // The kernel-named per-slot counters are lopsided (representatives in one slot); the
        // attributions add up to the same global pages_sharing (4 + 3).
        #expect(h.engine.counters.pagesSharing == 7)
        #expect(shares.reduce(0, +) == 7)
    }

    @Test("Identical guests are attributed equal shares")
    func identicalGuests() throws {
        let contents: [ContentID?] = [1, 2, 3, 4, 5, 6, 7, 8]
        let h = try Harness([FakeRegion(contents), FakeRegion(contents)], tunables: Tunables(pagesToScan: 1_000, maxPageSharing: 0, smartScan: false))
        h.scan(passes: 3)
        #expect(h.engine.attributedSharing(of: [[h.ids[0]], [h.ids[1]]]) == [4, 4])
    }

    /// A guest of two regions: its slots' shares add up; a node within one guest is its own.
    @Test("A guest's regions add up; a node all in one guest is attributed to it whole")
    func regionsAddUp() throws {
        // Content 1 three times in guest 0 (regions 0 and 1): a node of 3, saves 2, all guest 0's.
        let h = try Harness(
            [FakeRegion([1, 1]), FakeRegion([1, 50]), FakeRegion([60])],
            tunables: Tunables(pagesToScan: 1_000, maxPageSharing: 0, smartScan: false))
        h.scan(passes: 3)
        #expect(h.engine.attributedSharing(of: [[h.ids[0], h.ids[1]], [h.ids[2]]]) == [2, 0])
        h.engine.removeSlot(h.ids[2])
        #expect(h.engine.attributedSharing(of: [[h.ids[2]]]) == [0])
    }

    /// 14 pages in huge pages of 4: [0 0 0 0] all zero, [0 7 0 8] partly (2 stranded),
    /// [9 10 11 12] none, and a tail of 2 zero pages that is not a whole huge page.
    @Test("Huge pages: all zero, partly zero with their stranded zero pages, the tail left out")
    func hugePages() throws {
        let h = try Harness([FakeRegion([0, 0, 0, 0, 0, 7, 0, 8, 9, 10, 11, 12, 0, 0])], tunables: Tunables(pagesToScan: 1_000, smartScan: false))
        h.scan(passes: 3)
        #expect(h.engine.counters.zeroPages == 8)
        let z = try #require(h.engine.hugePageZeroes(of: h.ids[0], pagesPerHugePage: 4))
        #expect(z == HugePageZeroes(pagesPerHugePage: 4, hugePages: 3, allZero: 1, partlyZero: 1, strandedZeroPages: 2))
    }

    @Test("Huge page counts add up over regions")
    func hugePagesAccumulate() {
        var total = HugePageZeroes(pagesPerHugePage: 512, hugePages: 10, allZero: 2, partlyZero: 3, strandedZeroPages: 40)
        total.accumulate(HugePageZeroes(pagesPerHugePage: 512, hugePages: 6, allZero: 1, partlyZero: 0, strandedZeroPages: 0))
        #expect(total == HugePageZeroes(pagesPerHugePage: 512, hugePages: 16, allZero: 3, partlyZero: 3, strandedZeroPages: 40))
    }
}

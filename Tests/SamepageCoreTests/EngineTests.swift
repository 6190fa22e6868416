import Testing
@testable import SamepageCore
import TestSupport

/// Drives an engine over fake regions, checking tree and counter invariants after every batch.
struct Harness {
    let engine: Engine
    var regions: [FakeRegion]
    var ids: [SlotID]
    var groups: [Int]

    init(_ regions: [FakeRegion], groups: [Int]? = nil, tunables: Tunables, hasher: PageHasher = .xxh3, merging: [Bool]? = nil, maxPages: [Int]? = nil) throws {
        engine = try Engine(tunables: tunables, hasher: hasher)
        self.regions = regions
        self.groups = groups ?? Array(repeating: 0, count: regions.count)
        ids = []
        for (i, region) in regions.enumerated() {
            let group = engine.trustGroup(named: "g\(self.groups[i])")
            let options = SlotOptions(name: "slot\(i)", trustGroup: group, merging: merging?[i] ?? true, maxPages: maxPages?[i] ?? 0)
            ids.append(engine.addSlot(region, options: options)!)
        }
    }

    /// Runs batches until `passes` more full scans complete, checking invariants after each;
    /// each batch's confirmed zero pages go to `zeroPages`.
    @discardableResult
    func scan(
        passes: Int, zeroPages: (SlotPage) -> Void = { _ in }, sourceLocation: SourceLocation = #_sourceLocation
    ) -> [SlotFailure] {
        let target = engine.counters.fullScans + passes
        var failures: [SlotFailure] = []
        var batches = 0
        while engine.counters.fullScans < target {
            let report = engine.scanBatch(endingFullScans: true)
            failures += report.failures
            report.confirmedZeroPages.forEach(zeroPages)
            batches += 1
            let problems = engine.invariantViolations()
            #expect(problems.isEmpty, "after batch \(batches): \(problems.prefix(5))", sourceLocation: sourceLocation)
            if !problems.isEmpty || batches > 1_000_000 { break }
        }
        return failures
    }

    var observed: ReferenceCounts { ReferenceCounts(engine.counters) }

    /// After pages changed or slots left, a content left with one copy may stay a stable node
    /// of one page, as a KSM page mapped once stays one: shared or unshared, it is counted
    /// once. Everything else must match the reference exactly.
    func expectReconverged(to expected: ReferenceCounts, sourceLocation: SourceLocation = #_sourceLocation) {
        let got = observed
        #expect(got.zeroPages == expected.zeroPages, sourceLocation: sourceLocation)
        #expect(got.pagesSharing == expected.pagesSharing, sourceLocation: sourceLocation)
        #expect(got.pagesShared + got.pagesUnshared == expected.pagesShared + expected.pagesUnshared, sourceLocation: sourceLocation)
        #expect(got.pagesShared >= expected.pagesShared, sourceLocation: sourceLocation)
        #expect(engine.counters.pagesVolatile == 0, sourceLocation: sourceLocation)
        #expect(engine.vacantNodes == 0, sourceLocation: sourceLocation)
    }
}

func randomTunables(_ rng: inout SplitMix64) -> Tunables {
    Tunables(pagesToScan: [3, 64, 5000].randomElement(using: &rng)!, maxPageSharing: 0, smartScan: false)
}

@Suite("Merging engine against a reference model")
struct EngineReferenceTests {
    @Test("Random static fleets converge to the reference counts in two passes", arguments: 0..<60)
    func converges(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let fleet = randomFleet(&rng)
        let h = try Harness(fleet, tunables: randomTunables(&rng))
        h.scan(passes: 2)
        let expected = ReferenceCounts(fleet, groups: h.groups)
        #expect(h.observed == expected)
        #expect(h.engine.counters.pagesVolatile == 0)
        // A third pass changes nothing.
        h.scan(passes: 1)
        #expect(h.observed == expected)
        // Holes are never read.
        #expect(fleet.allSatisfy { $0.holesRead == 0 })
    }

    @Test("Mutations break sharing and counters re-converge", arguments: 0..<40)
    func reconverges(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let fleet = randomFleet(&rng)
        let h = try Harness(fleet, tunables: randomTunables(&rng))
        var unique: ContentID = 5_000_000
        for _ in 0..<3 {
            h.scan(passes: 2)
            // Mutate a random fraction of pages between batches, mid-scan included.
            let rate = Double.random(in: 0.01...0.5, using: &rng)
            for region in fleet {
                for p in region.pages.indices where Double.random(in: 0..<1, using: &rng) < rate {
                    region.pages[p] = randomContent(&rng, pool: 10, holeRate: 0.1, unique: &unique)
                }
            }
            h.engine.scanBatch()
            #expect(h.engine.invariantViolations().isEmpty)
        }
        h.scan(passes: 3)
        h.expectReconverged(to: ReferenceCounts(fleet, groups: h.groups))
        #expect(h.engine.rmapItems == fleet.reduce(0) { $0 + $1.pages.compactMap { $0 }.count })
    }

    @Test("Pages of different trust groups are never merged", arguments: 0..<30)
    func trustGroups(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let fleet = randomFleet(&rng, slots: 2...6)
        let groups = fleet.map { _ in Int.random(in: 0..<3, using: &rng) }
        let h = try Harness(fleet, groups: groups, tunables: randomTunables(&rng))
        h.scan(passes: 2)
        // Invariants check that no node has a member of another group; counts are per group.
        #expect(h.observed == ReferenceCounts(fleet, groups: groups))
        let matrix = h.engine.sharingMatrix()
        for (i, a) in h.ids.enumerated() {
            for (j, b) in h.ids.enumerated() where groups[i] != groups[j] {
                #expect(matrix[a]?[b] == nil)
            }
        }
    }

    @Test("Identical pages in two identical guests share across them")
    func crossSlotSharing() throws {
        let content: [ContentID?] = [1, 2, 3, 0, nil, 4, 4]
        let h = try Harness([FakeRegion(content), FakeRegion(content)], tunables: Tunables(pagesToScan: 3, smartScan: false))
        h.scan(passes: 2)
        // Contents 1, 2, 3 (two copies each) and 4 (four copies): 4 nodes, 1+1+1+3 sharing.
        #expect(h.observed == ReferenceCounts(pagesShared: 4, pagesSharing: 6, pagesUnshared: 0, zeroPages: 2))
        let matrix = h.engine.sharingMatrix()
        #expect(matrix[h.ids[0]]?[h.ids[1]] == 4)
    }

    @Test("A weak hash that collides for every page never merges different contents", arguments: 0..<15)
    func collisions(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let fleet = randomFleet(&rng, pages: 0...150)
        // Every non-zero page gets the same hash, so only the full compare can tell them apart.
        let colliding = PageHasher { _ in 0x5EED }
        let h = try Harness(fleet, tunables: randomTunables(&rng), hasher: colliding)
        h.scan(passes: 2)
        #expect(h.observed == ReferenceCounts(fleet, groups: h.groups))
        // Hashing only the first byte: collisions among many contents, not all.
        let firstByte = PageHasher { UInt64($0.load(as: UInt8.self)) }
        let h2 = try Harness(fleet, tunables: randomTunables(&rng), hasher: firstByte)
        h2.scan(passes: 2)
        #expect(h2.observed == ReferenceCounts(fleet, groups: h2.groups))
    }
}

@Suite("Caps, smart scan, slots and run modes")
struct EngineBehaviourTests {
    @Test("max_kernel_pages caps stable nodes and counts refusals", arguments: 0..<15)
    func maxKernelPages(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let fleet = randomFleet(&rng, slots: 2...5, pages: 50...400)
        let reference = ReferenceCounts(fleet, groups: Array(repeating: 0, count: fleet.count))
        let cap = max(1, reference.pagesShared / 2)
        var tunables = randomTunables(&rng)
        tunables.maxKernelPages = cap
        let h = try Harness(fleet, tunables: tunables)
        h.scan(passes: 3)
        #expect(h.engine.counters.pagesShared <= cap)
        if reference.pagesShared > cap {
            #expect(h.engine.counters.pagesShared == cap)
            #expect(h.engine.counters.mergesRefused > 0)
        }
        #expect(h.engine.counters.zeroPages == reference.zeroPages)
    }

    @Test("max_page_sharing caps members per node; full nodes get siblings", arguments: [2, 3, 5])
    func maxPageSharing(limit: Int) throws {
        // 11 copies of one content, 4 of another.
        let region = FakeRegion(Array(repeating: 7, count: 11) + Array(repeating: 8, count: 4))
        let h = try Harness([region], tunables: Tunables(pagesToScan: 4, maxPageSharing: limit, smartScan: false))
        h.scan(passes: 4)  // invariants check every node has at most `limit` members
        func nodes(_ copies: Int) -> (shared: Int, sharing: Int) {
            let full = copies / limit, rest = copies % limit
            return (full + (rest >= 2 ? 1 : 0), full * (limit - 1) + (rest >= 2 ? rest - 1 : 0))
        }
        let a = nodes(11), b = nodes(4)
        #expect(h.engine.counters.pagesShared == a.shared + b.shared)
        #expect(h.engine.counters.pagesSharing == a.sharing + b.sharing)
    }

    @Test("A slot's max_pages caps its pages tracked as sharing")
    func perSlotCap() throws {
        let a = FakeRegion(Array(1...20).map { ContentID($0) })
        let b = FakeRegion(Array(1...20).map { ContentID($0) })
        let h = try Harness([a, b], tunables: Tunables(pagesToScan: 9, smartScan: false), maxPages: [5, 0])
        h.scan(passes: 3)
        #expect(h.engine.counters(for: h.ids[0])!.pagesShared + h.engine.counters(for: h.ids[0])!.pagesSharing <= 5)
        #expect(h.engine.counters.pagesSharing == 5)
        #expect(h.engine.counters.mergesRefused > 0)
    }

    @Test("A slot in mode zero finds zero pages and compares nothing")
    func zeroOnlySlot() throws {
        let content: [ContentID?] = [1, 1, 0, 0, 2]
        let h = try Harness([FakeRegion(content), FakeRegion(content)], tunables: Tunables(smartScan: false), merging: [false, true])
        h.scan(passes: 2)
        #expect(h.observed == ReferenceCounts(h.regions, groups: h.groups, merging: [false, true]))
        #expect(h.engine.counters(for: h.ids[0])!.zeroPages == 2)
        #expect(h.engine.counters(for: h.ids[0])!.pagesSharing + h.engine.counters(for: h.ids[0])!.pagesShared == 0)
    }

    @Test("Smart scan skips pages that keep failing to merge, never merged or zero ones")
    func smartScan() throws {
        let region = FakeRegion((1...50).map { ContentID($0) } + [900, 900, 0, 0])
        let h = try Harness([region], tunables: Tunables(pagesToScan: 1000, smartScan: true))
        h.scan(passes: 12)
        let c = h.engine.counters
        #expect(c.pagesSkipped > 0)
        #expect(c.pagesShared == 1 && c.pagesSharing == 1 && c.zeroPages == 2)
        // 12 passes over 54 pages, with skips: fewer visits than 12 * 54.
        #expect(c.pagesScanned + c.pagesSkipped == 12 * 54)
        #expect(c.pagesScanned < 12 * 54)
        // A skipped page that becomes a duplicate is still found once its skip runs out.
        region.pages[0] = 900
        h.scan(passes: 10)
        #expect(h.engine.counters.pagesSharing == 2)
    }

    @Test("A page backed off from outside is skipped for that many passes, then scanned again")
    func backOff() throws {
        let region = FakeRegion([0, 0, 0, 0])  // zero pages are never skipped by smart scan
        let h = try Harness([region], tunables: Tunables(pagesToScan: 100, smartScan: true))
        h.scan(passes: 2)
        // Page 0 was reclaimed (a hole), and the guest touched it again: resident, not zero.
        region.pages[0] = 42
        h.engine.backOff(slot: h.ids[0], page: 0, passes: 3)
        #expect(h.engine.invariantViolations().isEmpty)
        let skipped = h.engine.counters.pagesSkipped
        h.scan(passes: 3)
        #expect(h.engine.counters.pagesSkipped == skipped + 3)
        let scanned = h.engine.counters(for: h.ids[0])!.pagesScanned
        h.scan(passes: 1)
        #expect(h.engine.counters(for: h.ids[0])!.pagesScanned == scanned + 4)
    }

    @Test("Removing slots at any moment keeps trees and counters consistent", arguments: 0..<30)
    func removal(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let fleet = randomFleet(&rng, slots: 2...6)
        let h = try Harness(fleet, tunables: randomTunables(&rng))
        var alive = Array(fleet.indices)
        h.scan(passes: 1)
        while alive.count > 1 {
            for _ in 0..<Int.random(in: 0...5, using: &rng) {
                h.engine.scanBatch()
                #expect(h.engine.invariantViolations().isEmpty)
            }
            let victim = alive.remove(at: Int.random(in: 0..<alive.count, using: &rng))
            h.engine.removeSlot(h.ids[victim])
            #expect(h.engine.invariantViolations().isEmpty)
            #expect(h.engine.counters(for: h.ids[victim]) == nil)
        }
        h.scan(passes: 2)
        let survivor = fleet[alive[0]]
        h.expectReconverged(to: ReferenceCounts([survivor], groups: [0]))
        #expect(h.engine.rmapItems == survivor.pages.compactMap { $0 }.count)
    }

    @Test("A slot whose memory can't be read is dropped and reported, mid-scan")
    func failingSlot() throws {
        let good = FakeRegion([1, 2, 0, 3])
        let bad = FakeRegion([1, 2, 0, 4])
        let h = try Harness([good, bad], tunables: Tunables(pagesToScan: 2, smartScan: false))
        h.scan(passes: 2)
        #expect(h.engine.counters.pagesSharing == 2)
        bad.failReads = true
        let failures = h.scan(passes: 2)
        #expect(failures.map(\.slot) == [h.ids[1]])
        #expect(failures.first?.reason == "backend truncated")
        #expect(h.engine.slotIDs == [h.ids[0]])
        h.expectReconverged(to: ReferenceCounts([good], groups: [0]))
    }

    @Test("A run whose pages left memory after residency is skipped, not a failure of its slot")
    func pagesThatLeftMemory() throws {
        let a = FakeRegion([1, 2, nil, 3, 4])
        let b = FakeRegion([1, 2, nil, 3, 4])
        b.leftMemory = [1]  // Swapped out between residency and read: the run 0..<2 is not read.
        let h = try Harness([a, b], tunables: Tunables(smartScan: false))
        #expect(h.scan(passes: 3).isEmpty)
        #expect(h.engine.slotIDs == h.ids)
        #expect(h.engine.counters.pagesSharing == 2)  // Contents 3 and 4 only.
        b.leftMemory = []
        #expect(h.scan(passes: 2).isEmpty)
        #expect(h.observed == ReferenceCounts([a, b], groups: [0, 0]))
        #expect(h.engine.counters.pagesSharing == 4)
    }

    @Test("Pages that become holes lose their rmap items; regions that refill are tracked again")
    func holes() throws {
        let region = FakeRegion(Array(repeating: 5, count: 1200) + [0, 0])
        let h = try Harness([region], tunables: Tunables(pagesToScan: 300, maxPageSharing: 0, smartScan: false))
        h.scan(passes: 2)
        #expect(h.engine.rmapItems == 1202)
        let full = h.engine.trackingBytes
        for p in 0..<1200 { region.pages[p] = nil }
        h.scan(passes: 1)
        #expect(h.engine.rmapItems == 2)
        #expect(h.engine.counters.pagesShared == 0)
        #expect(h.engine.trackingBytes < full)  // emptied rmap chunks are freed
        for p in 0..<600 { region.pages[p] = 5 }
        h.scan(passes: 2)
        #expect(h.engine.rmapItems == 602)
        #expect(h.observed == ReferenceCounts([region], groups: [0]))
    }

    @Test("Zero pages leave through the batch report once, after two zero visits")
    func confirmedZeroPages() throws {
        let region = FakeRegion([0, 1, 0, nil, 0])
        let h = try Harness([region], tunables: Tunables(smartScan: false))
        var handed: [Int] = []
        let hand = { (zero: SlotPage) in
            #expect(zero.slot == h.ids[0])
            handed.append(zero.page)
        }
        h.scan(passes: 1, zeroPages: hand)
        #expect(handed.isEmpty)
        h.scan(passes: 3, zeroPages: hand)
        #expect(handed.sorted() == [0, 2, 4])
        region.pages[2] = 9
        h.scan(passes: 1, zeroPages: hand)
        #expect(h.engine.counters.zeroPages == 2)
        region.pages[2] = 0
        h.scan(passes: 2, zeroPages: hand)
        #expect(handed.sorted() == [0, 2, 2, 4])
    }

    @Test("Each batch reports only its own confirmations, with their slots, even across a kept report")
    func confirmedZeroPagesPerBatch() throws {
        let a = FakeRegion([0, 0, 1])
        let b = FakeRegion([2, 0])
        let h = try Harness([a, b], tunables: Tunables(pagesToScan: 2, smartScan: false))
        var reports: [BatchReport] = []  // kept: the engine must not reuse their storage
        while h.engine.counters.fullScans < 3 { reports.append(h.engine.scanBatch()) }
        let all = reports.flatMap(\.confirmedZeroPages)
        #expect(all.sorted { ($0.slot, $0.page) < ($1.slot, $1.page) }
            == [SlotPage(slot: h.ids[0], page: 0), SlotPage(slot: h.ids[0], page: 1), SlotPage(slot: h.ids[1], page: 1)])
        #expect(h.engine.counters.zeroPages == 3)
        h.engine.scanBatch()
        #expect(reports.flatMap(\.confirmedZeroPages).count == 3)
        #expect(h.engine.scanBatch().confirmedZeroPages.isEmpty)
    }

    @Test("A page seen zero for the first time is reported once as new, before its confirmation")
    func newZeroPages() throws {
        let region = FakeRegion([0, 1, 0, nil, 7])
        let h = try Harness([region], tunables: Tunables(smartScan: false))
        var new: [Int] = []
        for _ in 0..<4 { new += h.engine.scanBatch(endingFullScans: true).newZeroPages.map(\.page) }
        #expect(new == [0, 2])  // once each, on their first visit; never again while zero
        region.pages[4] = 0  // a page that held data turns zero
        region.pages[2] = 3  // and one that was zero holds data
        var later: [Int] = []
        for _ in 0..<2 { later += h.engine.scanBatch(endingFullScans: true).newZeroPages.map(\.page) }
        #expect(later == [4])
        region.pages[2] = 0  // zero again after holding data: new again
        #expect(h.engine.scanBatch(endingFullScans: true).newZeroPages.map(\.page) == [2])
    }

    @Test("run stop pauses scanning; run unmerge drops everything")
    func runModes() throws {
        let region = FakeRegion([1, 1, 0, 0, 2])
        let h = try Harness([region], tunables: Tunables(smartScan: false))
        h.scan(passes: 2)
        let scanned = h.engine.counters.pagesScanned
        h.engine.run = .stop
        #expect(h.engine.scanBatch().pagesScanned == 0)
        #expect(h.engine.counters.pagesScanned == scanned)
        #expect(h.engine.counters.pagesSharing == 1)
        h.engine.run = .unmerge
        #expect(h.engine.counters.pagesShared == 0 && h.engine.counters.zeroPages == 0 && h.engine.rmapItems == 0)
        #expect(h.engine.invariantViolations().isEmpty)
        h.engine.run = .merge
        h.scan(passes: 2)
        #expect(h.observed == ReferenceCounts([region], groups: [0]))
    }

    @Test("A slot added mid-scan waits behind the cursor until the next full scan")
    func insertBehindCursor() throws {
        let first = FakeRegion(Array(repeating: 1, count: 100))
        let h = try Harness([first], tunables: Tunables(pagesToScan: 10, smartScan: false))
        h.engine.scanBatch()
        let late = FakeRegion([1, 1])
        let id = h.engine.addSlot(late, options: SlotOptions(name: "late", trustGroup: h.engine.trustGroup(named: "g0")))!
        while h.engine.counters.fullScans == 0 {
            h.engine.scanBatch()
            if h.engine.counters.fullScans == 0 { #expect(h.engine.counters(for: id)!.pagesScanned == 0) }
        }
        h.engine.scanBatch()
        #expect(h.engine.counters(for: id)!.pagesScanned > 0)
    }

    @Test("Tunables out of range are rejected with the kernel's names")
    func tunables() throws {
        #expect(throws: TunableError(name: "max_page_sharing", value: 1, expected: "0 (unlimited) or at least 2")) {
            _ = try Engine(tunables: Tunables(maxPageSharing: 1))
        }
        let engine = try Engine()
        #expect(throws: TunableError.self) { try engine.setTunables(Tunables(pagesToScan: 0)) }
        try engine.setTunables(Tunables(pagesToScan: 7))
        #expect(engine.tunables.pagesToScan == 7)
    }
}

extension ReferenceCounts {
    init(pagesShared: Int, pagesSharing: Int, pagesUnshared: Int, zeroPages: Int) {
        self.init([], groups: [])
        self.pagesShared = pagesShared
        self.pagesSharing = pagesSharing
        self.pagesUnshared = pagesUnshared
        self.zeroPages = zeroPages
    }
}

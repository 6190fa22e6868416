import SamepageCore
import TestSupport

/// Content of a test page: 0 is the zero page; any other id is a distinct content.
typealias ContentID = UInt32

/// Bytes of the page with a content id, the same every time. Distinct ids differ in their
/// last word too, so a page that differs from another only near its end is covered.
func fillPage(_ id: ContentID, _ page: UnsafeMutableRawPointer) {
    let words = page.assumingMemoryBound(to: UInt64.self)
    guard id != 0 else {
        words.update(repeating: 0, count: pageSize / 8)
        return
    }
    var rng = SplitMix64(seed: UInt64(id))
    for i in 0..<(pageSize / 8) { words[i] = rng.next() }
    words[pageSize / 8 - 1] = UInt64(id)
}

/// A slot's memory held in the test: one content id per page, nil for a hole. Tests mutate
/// it between batches, as a guest would write its RAM, and can make it fail like a
/// truncated backend.
final class FakeRegion: PageSource {
    var pages: [ContentID?]
    var failReads = false
    /// Pages that residency still reports but that leave memory before a read reaches them:
    /// a read of a run holding one throws `NoLongerResident`, as a private region does.
    var leftMemory: Set<Int> = []
    private(set) var pagesRead = 0
    private(set) var holesRead = 0

    init(_ pages: [ContentID?]) { self.pages = pages }

    var pageCount: Int { pages.count }

    struct Truncated: Error, CustomStringConvertible {
        var description: String { "backend truncated" }
    }

    func residency(of range: Range<Int>, into vector: UnsafeMutableBufferPointer<UInt8>) throws {
        if failReads { throw Truncated() }
        for page in range { vector[page - range.lowerBound] = pages[page] == nil ? 0 : 1 }
    }

    func read(_ range: Range<Int>, into buffer: UnsafeMutableRawBufferPointer) throws {
        if failReads { throw Truncated() }
        if range.contains(where: leftMemory.contains) { throw NoLongerResident(pages: range) }
        precondition(buffer.count == range.count * pageSize)
        for (k, page) in range.enumerated() {
            pagesRead += 1
            if pages[page] == nil { holesRead += 1 }
            fillPage(pages[page] ?? 0, buffer.baseAddress! + k * pageSize)
        }
    }
}

/// What KSM must find in a fleet that stopped changing, computed by counting contents: the
/// simple reference model the engine is checked against.
struct ReferenceCounts: Equatable, CustomStringConvertible {
    var pagesShared = 0
    var pagesSharing = 0
    var pagesUnshared = 0
    var zeroPages = 0

    /// `groups[i]` is slot i's trust group; only pages of one group are compared.
    init(_ regions: [FakeRegion], groups: [Int], merging: [Bool]? = nil) {
        var counts: [Int: [ContentID: Int]] = [:]
        for (i, region) in regions.enumerated() {
            for case let id? in region.pages {
                if id == 0 {
                    zeroPages += 1
                } else if merging?[i] ?? true {
                    counts[groups[i], default: [:]][id, default: 0] += 1
                }
            }
        }
        for (_, group) in counts {
            for (_, n) in group {
                if n >= 2 {
                    pagesShared += 1
                    pagesSharing += n - 1
                } else {
                    pagesUnshared += 1
                }
            }
        }
    }

    init(_ c: Counters) {
        pagesShared = c.pagesShared
        pagesSharing = c.pagesSharing
        pagesUnshared = c.pagesUnshared
        zeroPages = c.zeroPages
    }

    var description: String {
        "shared \(pagesShared) sharing \(pagesSharing) unshared \(pagesUnshared) zero \(zeroPages)"
    }
}

/// Random fleets: zero pages, contents duplicated within and across slots, unique pages, and
/// holes.
func randomFleet(_ rng: inout SplitMix64, slots: ClosedRange<Int> = 1...5, pages: ClosedRange<Int> = 0...400) -> [FakeRegion] {
    let slotCount = Int.random(in: slots, using: &rng)
    let pool = Int.random(in: 1...40, using: &rng)
    var nextUnique: ContentID = 1_000_000
    return (0..<slotCount).map { _ in
        let count = Int.random(in: pages, using: &rng)
        let holeRate = Double.random(in: 0...0.4, using: &rng)
        return FakeRegion((0..<count).map { _ in randomContent(&rng, pool: pool, holeRate: holeRate, unique: &nextUnique) })
    }
}

func randomContent(_ rng: inout SplitMix64, pool: Int, holeRate: Double, unique: inout ContentID) -> ContentID? {
    let roll = Double.random(in: 0..<1, using: &rng)
    if roll < holeRate { return nil }
    switch Int.random(in: 0..<3, using: &rng) {
    case 0: return 0
    case 1: return ContentID(Int.random(in: 1...pool, using: &rng))
    default:
        unique += 1
        return unique
    }
}

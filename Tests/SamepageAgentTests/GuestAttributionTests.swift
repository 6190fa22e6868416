import Foundation
import Libvirt
@testable import SamepageAgent
import SamepageCore
import Testing

/// A region whose pages are all resident, each page filled with its content byte.
private final class BytePages: PageSource {
    let contents: [UInt8]
    init(_ contents: [UInt8]) { self.contents = contents }
    var pageCount: Int { contents.count }
    func residency(of pages: Range<Int>, into vector: UnsafeMutableBufferPointer<UInt8>) throws {
        for i in pages.indices { vector[i - pages.lowerBound] = 1 }
    }
    func read(_ pages: Range<Int>, into buffer: UnsafeMutableRawBufferPointer) throws {
        for (k, page) in pages.enumerated() {
            buffer.baseAddress!.advanced(by: k * pageSize).initializeMemory(as: UInt8.self, repeating: contents[page], count: pageSize)
        }
    }
}

/// The agent's room for attributed sharing: per guest, from the engine, and not worked out
/// again within its interval.
@Suite("Guest attribution") struct GuestAttributionTests {
    static func guest(_ name: String, _ uuid: String) -> TrackedGuest {
        TrackedGuest(DomainInfo(name: name, uuid: UUID(uuidString: uuid)!, id: 1, state: .running, pausedReason: nil))
    }

    @Test func perGuestFiguresAndTheInterval() throws {
        let engine = try Engine(tunables: Tunables(pagesToScan: 1_000, maxPageSharing: 0, smartScan: false))
        let group = engine.trustGroup(named: "web")
        // A: contents 1, 2, 3; B: 1, 2, 9. Contents 1 and 2 are nodes of 2 pages: half a page
        // to each guest for each, so 1 page each.
        let a = Self.guest("a", "00000000-0000-0000-0000-00000000000a")
        let b = Self.guest("b", "00000000-0000-0000-0000-00000000000b")
        a.slots = [engine.addSlot(BytePages([1, 2, 3]), options: SlotOptions(name: "a", trustGroup: group))!]
        b.slots = [engine.addSlot(BytePages([1, 2, 9]), options: SlotOptions(name: "b", trustGroup: group))!]
        while engine.counters.fullScans < 3 { _ = engine.scanBatch(endingFullScans: true) }
        var attribution = GuestAttribution()
        let start = ContinuousClock.now
        let first = attribution.refresh([a.uuid: a, b.uuid: b], engine: engine, at: start)
        #expect(first)
        #expect(attribution.of(a.uuid).sharingPages == 1)
        #expect(attribution.of(b.uuid).sharingPages == 1)
        // No hugetlbfs region: no huge-page counts.
        #expect(attribution.of(a.uuid).hugePageZeroes == nil)
        // Within the interval nothing is worked out again, even for a guest that left.
        let early = attribution.refresh([a.uuid: a], engine: engine, at: start + .seconds(1))
        #expect(!early)
        #expect(attribution.of(b.uuid).sharingPages == 1)
        let due = attribution.refresh([a.uuid: a], engine: engine, at: start + GuestAttribution.interval)
        #expect(due)
        #expect(attribution.of(b.uuid) == GuestAttribution.Figures())
        // Alone, A's pages still share with B's in the engine: its own half of each node.
        #expect(attribution.of(a.uuid).sharingPages == 1)
    }
}

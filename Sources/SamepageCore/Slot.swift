/// Identifies a slot for the life of the engine; never reused.
public struct SlotID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    var index: Int { Int(rawValue & 0xFFFF) }
    public static func < (a: SlotID, b: SlotID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "slot#\(rawValue >> 16).\(index)" }
}

/// One page of a slot: the slot and the page's index in it.
public struct SlotPage: Hashable, Sendable {
    public var slot: SlotID
    public var page: Int
    public init(slot: SlotID, page: Int) {
        self.slot = slot
        self.page = page
    }
}

/// A set of guests whose pages may be compared with each other.
///
/// Page sharing is a cross-VM side channel, so pages of different trust groups are never
/// compared or merged. A guest without a configured group gets a private one
/// (``Engine/privateTrustGroup()``), so it only ever shares within itself.
public struct TrustGroup: Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
}

/// How the engine treats one slot, from the guest's policy.
public struct SlotOptions: Sendable, Equatable {
    /// A name for reports (a guest name and region, a file path).
    public var name: String
    /// The group whose other slots this one may be compared with.
    public var trustGroup: TrustGroup
    /// Whether pages take part in the stable and unstable trees. False for the policy mode
    /// `zero`: zero pages are still found, nothing is compared across pages.
    public var merging: Bool
    /// Cap on this slot's pages tracked as sharing (stable-node members); 0 = unlimited.
    public var maxPages: Int

    public init(name: String, trustGroup: TrustGroup, merging: Bool = true, maxPages: Int = 0) {
        self.name = name
        self.trustGroup = trustGroup
        self.merging = merging
        self.maxPages = maxPages
    }
}

/// Why the engine dropped a slot on its own: its memory could no longer be read.
public struct SlotFailure: Sendable, CustomStringConvertible {
    public var slot: SlotID
    public var name: String
    public var reason: String
    public var description: String { "\(name): \(reason)" }
}

/// ksm.c's `mm_slot`: one guest RAM region on the scan list, with its rmap items in address
/// order (chunked, see ``RmapChunk``) and its own counters.
final class Slot {
    let id: SlotID
    let source: any PageSource
    let pageCount: Int
    var options: SlotOptions
    var failed = false

    var chunks: [RmapChunk?]
    var chunkTracked: [UInt16]

    /// This slot's share of the engine's counts, updated with the engine's in one call
    /// (``Engine/count(_:in:)``); the kernel-named counters derive from it (see `counters`).
    var tally = Tally()
    /// Stable nodes whose representative page is in this slot: its `pages_shared`.
    var owned = 0

    init(id: SlotID, source: any PageSource, options: SlotOptions) {
        self.id = id
        self.source = source
        self.pageCount = source.pageCount
        self.options = options
        let chunkCount = (pageCount + RmapChunk.pages - 1) >> RmapChunk.shift
        chunks = Array(repeating: nil, count: chunkCount)
        chunkTracked = Array(repeating: 0, count: chunkCount)
    }

    var group: UInt32 { options.trustGroup.rawValue }

    var counters: Counters { tally.counters(pagesShared: owned) }

    /// Stable-node memberships of this slot's pages, for the `max_pages` cap.
    var members: Int { tally.members }

    func freeChunks() {
        for case let chunk? in chunks { chunk.deallocate() }
        chunks = Array(repeating: nil, count: chunks.count)
        chunkTracked = Array(repeating: 0, count: chunks.count)
    }

    deinit { freeChunks() }
}

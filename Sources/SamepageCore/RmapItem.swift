/// The per-page tracking state: the analogue of ksm.c's `rmap_item`, packed into 8 bytes.
///
/// ksm.c keeps a 64-byte `rmap_item` per scanned page on a per-mm list. Here a slot keeps its
/// pages' items in address order in fixed chunks of ``RmapChunk/pages`` pages, allocated only
/// where the region has resident pages, each item being a 32-bit checksum and a 32-bit state
/// word. The page's address is its index, so it is not stored.
///
/// State word layout (`kind` in bits 0-1):
/// - untracked: the whole word is 0 (never visited, or forgotten when the page went away);
/// - stable (1): bits 2-31 are the stable node index; the checksum field is unused, because
///   the node holds the full hash;
/// - none (0), unstable (2), zero (3): bit 2 "visited", bit 3 "zero confirmed" (zero kind
///   only), bits 4-7 smart-scan age, bits 8-11 remaining skips.
@usableFromInline
struct RmapWord: Equatable, Sendable {
    @usableFromInline var raw: UInt32

    @usableFromInline enum Kind: UInt32 { case none = 0, stable = 1, unstable = 2, zero = 3 }

    @inline(__always) init(raw: UInt32) { self.raw = raw }

    static let visitedBit: UInt32 = 1 << 2
    static let confirmedBit: UInt32 = 1 << 3

    @inline(__always) static func stable(node: UInt32) -> RmapWord {
        RmapWord(raw: (node << 2) | Kind.stable.rawValue)
    }
    /// A visited page of the given (non-stable) kind, keeping this word's smart-scan age.
    @inline(__always) func with(kind: Kind, confirmed: Bool = false) -> RmapWord {
        let ageBits: UInt32 = self.kind == .stable ? 0 : raw & 0xFF0
        return RmapWord(raw: ageBits | RmapWord.visitedBit | (confirmed ? RmapWord.confirmedBit : 0) | kind.rawValue)
    }

    @inline(__always) var isTracked: Bool { raw != 0 }
    @inline(__always) var kind: Kind { Kind(rawValue: raw & 3)! }
    @inline(__always) var node: UInt32 { raw >> 2 }
    @inline(__always) var visited: Bool { kind == .stable || raw & RmapWord.visitedBit != 0 }
    @inline(__always) var zeroConfirmed: Bool { kind == .zero && raw & RmapWord.confirmedBit != 0 }

    @inline(__always) var age: UInt32 { (raw >> 4) & 0xF }
    @inline(__always) var remainingSkips: UInt32 { (raw >> 8) & 0xF }
    @inline(__always) mutating func setSmartScan(age: UInt32, remainingSkips: UInt32) {
        raw = (raw & ~0xFF0) | (min(age, 15) << 4) | (min(remainingSkips, 15) << 8)
    }
}

/// A fixed-size block of rmap items: 512 pages (2 MiB of guest RAM) in 4 KiB of tracking.
@usableFromInline
struct RmapChunk {
    static let pages = 512
    static let shift = 9

    /// Checksums in the first half, state words in the second.
    let base: UnsafeMutablePointer<UInt32>

    static func allocate() -> RmapChunk {
        let p = UnsafeMutablePointer<UInt32>.allocate(capacity: 2 * pages)
        p.initialize(repeating: 0, count: 2 * pages)
        return RmapChunk(base: p)
    }
    func deallocate() { base.deallocate() }

    @inline(__always) var checksums: UnsafeMutablePointer<UInt32> { base }
    @inline(__always) var words: UnsafeMutablePointer<UInt32> { base + RmapChunk.pages }

    static let byteCount = 2 * pages * MemoryLayout<UInt32>.stride
}

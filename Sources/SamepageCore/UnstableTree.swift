/// The unstable tree: pages unchanged since the previous pass that found no duplicate yet.
///
/// As in ksm.c it is rebuilt from empty at every full scan, so entries that went stale (their
/// page changed, merged, or left) are simply ignored until then: every candidate is validated
/// against its page's rmap item before use. It is an open-addressing table of packed 8-byte
/// entries `(slot + 1) << 48 | page << 16 | tag`, where the bucket comes from the page's
/// 32-bit checksum and a 16-bit tag from the rest of its hash, so 48 bits of hash filter
/// candidates before a page is read for the full compare.
@usableFromInline
struct UnstableTree {
    private(set) var buckets: [UInt64]
    private(set) var count = 0
    static let minimumCapacity = 1 << 12

    init() { buckets = Array(repeating: 0, count: UnstableTree.minimumCapacity) }

    @inline(__always) static func tag(of hash: UInt64) -> UInt64 { (hash >> 48) & 0xFFFF }
    @inline(__always) static func checksum(of hash: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: hash) }

    @inline(__always) static func entry(slot: Int, page: Int, hash: UInt64) -> UInt64 {
        (UInt64(slot + 1) << 48) | (UInt64(UInt32(page)) << 16) | tag(of: hash)
    }
    @inline(__always) static func slot(of entry: UInt64) -> Int { Int(entry >> 48) - 1 }
    @inline(__always) static func page(of entry: UInt64) -> Int { Int((entry >> 16) & 0xFFFF_FFFF) }

    /// The bucket for a page with this checksum and tag in this trust group.
    @inline(__always) func home(checksum: UInt32, tag: UInt64, group: UInt32) -> Int {
        Int(truncatingIfNeeded: treeKey(hash: UInt64(checksum) | (tag << 32), group: group)) & (buckets.count - 1)
    }

    /// Where a probe for this hash in this group starts.
    @inline(__always) func probeStart(hash: UInt64, group: UInt32) -> Int {
        home(checksum: UnstableTree.checksum(of: hash), tag: UnstableTree.tag(of: hash), group: group)
    }

    /// The next entry at or after bucket `i` whose tag matches `hash`, advancing `i` past it;
    /// nil at the end of the probe run.
    @inline(__always)
    func nextCandidate(_ i: inout Int, hash: UInt64) -> UInt64? {
        let tag = UnstableTree.tag(of: hash)
        let mask = buckets.count - 1
        while true {
            let e = buckets[i]
            if e == 0 { return nil }
            i = (i + 1) & mask
            if e & 0xFFFF == tag { return e }
        }
    }

    /// Files a page. `rehome` gives the bucket of an existing entry's page, or nil if the
    /// entry went stale; it is only used when the table grows.
    mutating func insert(_ entry: UInt64, hash: UInt64, group: UInt32, rehome: (UInt64) -> (checksum: UInt32, group: UInt32)?) {
        if (count + 1) * 4 > buckets.count * 3 { grow(rehome) }
        place(entry, home(checksum: UnstableTree.checksum(of: hash), tag: UnstableTree.tag(of: hash), group: group))
        count += 1
    }

    private mutating func place(_ entry: UInt64, _ start: Int) {
        let mask = buckets.count - 1
        var i = start
        while buckets[i] != 0 { i = (i + 1) & mask }
        buckets[i] = entry
    }

    private mutating func grow(_ rehome: (UInt64) -> (checksum: UInt32, group: UInt32)?) {
        let old = buckets
        buckets = Array(repeating: 0, count: old.count * 2)
        count = 0
        for e in old where e != 0 {
            guard let (checksum, group) = rehome(e) else { continue }
            place(e, home(checksum: checksum, tag: e & 0xFFFF, group: group))
            count += 1
        }
    }

    /// Empties the tree for a new full scan, sized for about as many pages as the last one.
    mutating func reset() {
        var capacity = UnstableTree.minimumCapacity
        while capacity * 3 < count * 4 + 4 { capacity *= 2 }
        if capacity == buckets.count {
            buckets.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
        } else {
            buckets = Array(repeating: 0, count: capacity)
        }
        count = 0
    }

    var entries: some Sequence<UInt64> { buckets.lazy.filter { $0 != 0 } }

    var trackingBytes: Int { buckets.capacity * 8 }
}

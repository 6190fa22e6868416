import CXXHash

/// The function that gives a page its 64-bit content hash.
///
/// The hash is both the volatility checksum (a page enters the unstable tree only if its hash
/// did not change since the previous pass) and the key of both trees. It only ever finds
/// candidates: every merge is confirmed by a full compare of the two pages' contents.
/// Production uses XXH3 from libxxhash; tests may inject a deliberately weak hasher to prove
/// that hash collisions between different contents never merge them.
public struct PageHasher: Sendable {
    /// Hashes exactly one page (``pageSize`` bytes) at the pointer.
    public let hash: @Sendable (UnsafeRawPointer) -> UInt64

    public init(hash: @escaping @Sendable (UnsafeRawPointer) -> UInt64) {
        self.hash = hash
    }

    /// XXH3-64 over the page, as current kernels checksum pages with xxHash.
    public static let xxh3 = PageHasher { XXH3_64bits($0, pageSize) }
}

/// Whether the page at `page` (``pageSize`` bytes, 8-byte aligned) is all zero bytes.
///
/// Most non-zero pages differ from zero within the first cache line, so this returns early.
@inlinable
public func isZeroPage(_ page: UnsafeRawPointer) -> Bool {
    let words = page.assumingMemoryBound(to: UInt64.self)
    var i = 0
    while i < pageSize / 8 {
        let acc = words[i] | words[i + 1] | words[i + 2] | words[i + 3]
            | words[i + 4] | words[i + 5] | words[i + 6] | words[i + 7]
        if acc != 0 { return false }
        i += 8
    }
    return true
}

/// Whether two pages hold the same bytes: the full compare that confirms every merge.
@inlinable
public func pagesIdentical(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer) -> Bool {
    let x = a.assumingMemoryBound(to: UInt64.self)
    let y = b.assumingMemoryBound(to: UInt64.self)
    var i = 0
    while i < pageSize / 8 {
        let diff = (x[i] ^ y[i]) | (x[i + 1] ^ y[i + 1]) | (x[i + 2] ^ y[i + 2]) | (x[i + 3] ^ y[i + 3])
        if diff != 0 { return false }
        i += 4
    }
    return true
}

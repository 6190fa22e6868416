#if canImport(Glibc)
import Glibc
#endif
import SamepageCore

/// What one verify-and-punch pass over a batch of candidate zero pages did.
public struct ZeroPageReclaim: Sendable, Equatable {
    /// Pages found still all zero and punched out.
    public var pagesPunched = 0
    /// Candidates that were no longer zero (or no longer resident): left alone.
    public var pagesChanged = 0
    /// `fallocate` calls: contiguous punched pages share one.
    public var ranges = 0
    /// Bytes the backend gave back, from its allocated blocks before and after: a punch
    /// inside a transparent huge page may free nothing, so this is not `pagesPunched * 4096`.
    public var bytesFreed = 0
    /// The page ranges punched.
    public var punched: [Range<Int>] = []

    public init() {}
}

extension GuestRegion {
    /// Gives zero pages back to the host: re-verifies that each candidate page is still all
    /// zero and punches a hole for those that are (`fallocate(PUNCH_HOLE|KEEP_SIZE)`),
    /// contiguous pages coalesced into one range. A hole reads as zeroes, so the guest sees
    /// the same content.
    ///
    /// Call it only while nothing can write the backend: inside a pause the caller made
    /// (a suspended guest), never otherwise. The backend is checked to be the same file,
    /// still mapped by its process, before anything is punched. Needs a region opened
    /// `.readWrite`.
    ///
    /// - Parameter pages: candidate page indexes, in any order; duplicates are ignored.
    public func reclaimZeroPages(_ pages: [Int]) throws(BackendError) -> ZeroPageReclaim {
        precondition(access == .readWrite, "reclaim needs a region opened read-write")
        var outcome = ZeroPageReclaim()
        let candidates = Array(Set(pages)).sorted()
        guard !candidates.isEmpty else { return outcome }
        try ensureStillSameBackend()
        let before = try allocatedBytes()

        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: pageSize)
        defer { buffer.deallocate() }
        let vector = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: 1)
        defer { vector.deallocate() }

        var run: Range<Int>?
        func flush() throws(BackendError) {
            guard let range = run else { return }
            do {
                try LinuxCalls.punchHole(descriptor, offset: fileOffset + range.lowerBound * pageSize, length: range.count * pageSize)
            } catch {
                throw .system(error)
            }
            outcome.ranges += 1
            outcome.punched.append(range)
            run = nil
        }
        for page in candidates {
            precondition(page >= 0 && page < pageCount, "page \(page) outside the region")
            // A page that is not resident (swapped out, already a hole) is not read: reading
            // would swap it in. It is left alone.
            do {
                try residency(of: page..<(page + 1), into: vector)
                guard vector[0] & 1 != 0 else {
                    outcome.pagesChanged += 1
                    continue
                }
                try read(page: page, into: buffer)
            } catch let error as BackendError {
                throw error
            } catch {
                throw .system(SystemError(errno: EIO, operation: "\(error)"))
            }
            guard isZeroPage(buffer.baseAddress!) else {
                outcome.pagesChanged += 1
                continue
            }
            outcome.pagesPunched += 1
            if let current = run, current.upperBound == page {
                run = current.lowerBound..<(page + 1)
            } else {
                try flush()
                run = page..<(page + 1)
            }
        }
        try flush()
        outcome.bytesFreed = max(0, before - (try allocatedBytes()))
        return outcome
    }

    /// Allocates reclaimed ranges again (`samepage run unmerge`): holes in `pages` become
    /// zero-filled pages backed by memory, as before the reclaim. Safe while the guest runs:
    /// allocating never changes what the guest reads.
    public func repopulate(_ pages: Range<Int>) throws(BackendError) {
        guard !pages.isEmpty else { return }
        precondition(access == .readWrite, "repopulating needs a region opened read-write")
        do {
            try LinuxCalls.allocate(descriptor, offset: fileOffset + pages.lowerBound * pageSize, length: pages.count * pageSize)
        } catch {
            throw .system(error)
        }
    }
}

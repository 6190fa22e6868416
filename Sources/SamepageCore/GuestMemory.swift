/// The size of the pages the engine compares and merges, in bytes.
///
/// Guest RAM is scanned in base pages, as ksm.c does, even when the backend uses huge pages.
public let pageSize = 4096

/// How guest memory reaches the engine: in batches, never a call per page.
///
/// The engine is pure; everything that touches a real backend (mincore, pread, a memory
/// image file) lives behind this protocol, so tests and benchmarks can feed the engine
/// in-memory or file-backed fleets and the daemon can feed it real guests.
///
/// Implementations must never allocate guest memory or fault it in: `residency` reports
/// what is already resident, and the reads only ever touch pages it reported.
public protocol PageSource: AnyObject {
    /// The region's size in pages. Fixed for the life of the slot.
    var pageCount: Int { get }

    /// Fills `vector[i]` for each page `pages.lowerBound + i`: bit 0 set if the page is
    /// resident (allocated in the backend), clear for a hole. The same shape as mincore(2).
    func residency(of pages: Range<Int>, into vector: UnsafeMutableBufferPointer<UInt8>) throws

    /// Reads the contiguous run `pages` into `buffer`, which holds exactly
    /// `pages.count * pageSize` bytes. A short read (the backend shrank) must throw.
    ///
    /// A source whose pages can leave memory between `residency` and `read` without the
    /// region going bad (a guest's private RAM, which the host may swap or reclaim at any
    /// moment) throws ``NoLongerResident`` rather than read such a page: the engine then
    /// skips the run for this pass. Any other error fails the slot.
    func read(_ pages: Range<Int>, into buffer: UnsafeMutableRawBufferPointer) throws
}

/// Thrown by ``PageSource/read(_:into:)`` when a page of the run that `residency` reported
/// resident is not any more, so the run was not read (reading it would fault the page back
/// in). Not a failure of the slot: the engine skips the run this pass, as if it had not been
/// resident, and the next pass's residency decides again.
public struct NoLongerResident: Error, Sendable, Hashable, CustomStringConvertible {
    /// The run that was not read.
    public var pages: Range<Int>

    public init(pages: Range<Int>) { self.pages = pages }

    public var description: String { "pages \(pages) left memory before they could be read" }
}

extension PageSource {
    /// Reads one page, for a confirming compare.
    @inlinable
    public func read(page: Int, into buffer: UnsafeMutableRawBufferPointer) throws {
        try read(page..<(page + 1), into: buffer)
    }
}

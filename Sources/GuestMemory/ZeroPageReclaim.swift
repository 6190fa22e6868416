import LinuxSystem
import SamepageCore

/// What one verify-and-punch pass over a batch of candidate zero pages did.
public struct ZeroPageReclaim: Sendable, Equatable {
    /// Pages found still all zero and punched out.
    public var pagesPunched = 0
    /// Candidates that were no longer zero (or no longer resident): left alone. On hugetlbfs,
    /// every page of a huge page that had all its pages as candidates but one of them no
    /// longer zero or resident.
    public var pagesChanged = 0
    /// Candidates on hugetlbfs left alone, unread, because the other pages of their huge page
    /// were not all candidates too (or the huge page is not wholly inside the region): a
    /// punch of less than a huge page frees nothing. Always 0 on other backends.
    public var pagesSkippedPartialHugePage = 0
    /// `fallocate` calls: contiguous punched pages share one; on hugetlbfs, one per huge page.
    public var ranges = 0
    /// Bytes the backend gave back, from its allocated blocks before and after: a punch
    /// inside a transparent huge page may free nothing, so this is not `pagesPunched * 4096`.
    public var bytesFreed = 0
    /// The page ranges punched.
    public var punched: [Range<Int>] = []

    /// The caller's `shouldContinue` said stop (a deadline, an outside state change) before
    /// every candidate was looked at.
    public var stoppedEarly = false

    public init() {}

    /// Adds another pass's figures (several regions in one pause).
    public mutating func add(_ other: ZeroPageReclaim) {
        pagesPunched += other.pagesPunched
        pagesChanged += other.pagesChanged
        pagesSkippedPartialHugePage += other.pagesSkippedPartialHugePage
        ranges += other.ranges
        bytesFreed += other.bytesFreed
        punched += other.punched
        stoppedEarly = stoppedEarly || other.stoppedEarly
    }
}

/// Where a region's 4 KiB pages fall in the huge pages of a hugetlbfs backend. Huge page `k`
/// is the file's bytes `[k * hugePageSize, (k + 1) * hugePageSize)`; the region starts at
/// `fileOffset` in the file.
public struct HugePageLayout: Sendable, Hashable {
    /// The huge page size in bytes (2 MiB, 1 GiB), a multiple of `pageSize`.
    public var hugePageSize: Int
    /// Where the region starts in the backend file, in bytes (a multiple of `pageSize`).
    public var fileOffset: Int
    /// The region's size in 4 KiB pages.
    public var pageCount: Int

    public init(hugePageSize: Int, fileOffset: Int, pageCount: Int) {
        precondition(hugePageSize > 0 && hugePageSize % pageSize == 0 && fileOffset % pageSize == 0 && pageCount >= 0)
        self.hugePageSize = hugePageSize
        self.fileOffset = fileOffset
        self.pageCount = pageCount
    }

    public var pagesPerHugePage: Int { hugePageSize / pageSize }

    /// The huge pages whose every 4 KiB page is among `candidates`, as ranges of the region's
    /// page indexes, in order. A huge page that starts before the region or ends after it is
    /// never whole. Candidates outside the region are ignored; duplicates count once.
    public func wholeHugePages(in candidates: [Int]) -> [Range<Int>] {
        let pages = candidates.filter { $0 >= 0 && $0 < pageCount }.sorted()
        let perHugePage = pagesPerHugePage
        var whole: [Range<Int>] = []
        var index = 0
        while index < pages.count {
            // The huge page of the first candidate not yet looked at, and the candidates in it.
            let hugePage = (fileOffset + pages[index] * pageSize) / hugePageSize
            // Where it starts and ends relative to the region: it may start before it.
            let startByte = hugePage * hugePageSize - fileOffset
            let end = (startByte + hugePageSize) / pageSize
            var distinct = 1
            var next = index + 1
            while next < pages.count && pages[next] < end {
                if pages[next] != pages[next - 1] { distinct += 1 }
                next += 1
            }
            // Distinct pages, all inside [start, end): as many as the huge page has means all of them.
            if startByte >= 0, end <= pageCount, distinct == perHugePage {
                whole.append((startByte / pageSize)..<end)
            }
            index = next
        }
        return whole
    }
}

extension GuestRegion {
    /// The region's place in its huge pages, on hugetlbfs; nil on other backends.
    public var hugePageLayout: HugePageLayout? {
        guard case .hugetlbfs(let hugePageSize) = kind else { return nil }
        return HugePageLayout(hugePageSize: hugePageSize, fileOffset: fileOffset, pageCount: pageCount)
    }

    /// The candidates a reclaim could free, for deciding before a pause whether it can gain
    /// anything (none: do not pause). On hugetlbfs, the pages of whole huge pages all of whose
    /// pages are candidates; elsewhere every candidate inside the region. Sorted, each once.
    /// Pure: nothing is read, so the reclaim may still find some of them changed.
    public func reclaimablePages(among candidates: [Int]) -> [Int] {
        guard let layout = hugePageLayout else {
            return Set(candidates.filter { $0 >= 0 && $0 < pageCount }).sorted()
        }
        return layout.wholeHugePages(in: candidates).flatMap { Array($0) }
    }

    /// Gives zero pages back to the host: re-verifies that each candidate page is still
    /// resident and all zero and punches a hole for those that are
    /// (`fallocate(PUNCH_HOLE|KEEP_SIZE)`), contiguous pages coalesced into one range. A hole
    /// reads as zeroes, so the guest sees the same content.
    ///
    /// On hugetlbfs, where a punch of less than a huge page frees nothing (the kernel zeroes
    /// the range and keeps the page), only whole huge pages are punched: those all of whose
    /// pages are candidates (`HugePageLayout.wholeHugePages(in:)`), found again resident and
    /// all zero, each with one `fallocate` of exactly the huge page. The other candidates
    /// are left alone and counted in `pagesSkippedPartialHugePage`.
    ///
    /// Call it only while nothing can write the backend: inside a pause the caller made
    /// (a suspended guest), never otherwise. The backend is checked to be the same file,
    /// still mapped by its process, before anything is punched.
    ///
    /// A contiguous run is punched once it reaches ``maximumRunPages`` pages, so a page is
    /// never verified long before its punch. `shouldContinue` is asked before each page is
    /// verified (and each huge page); once it says no, nothing more is verified or punched
    /// and `stoppedEarly` is set. Pages verified and not yet punched are then left alone.
    ///
    /// - Parameter pages: candidate page indexes, in any order; duplicates are ignored.
    /// - Throws: `.notWritable` on a region opened `.readOnly`; a `BackendError` when the
    ///   backend changed or cannot be read, after which nothing more is punched.
    public func reclaimZeroPages(_ pages: [Int], while shouldContinue: () -> Bool = { true }) throws(BackendError) -> ZeroPageReclaim {
        guard access == .readWrite else { throw .notWritable(backend: backendID) }
        var outcome = ZeroPageReclaim()
        let candidates = Array(Set(pages)).sorted()
        guard let first = candidates.first, let last = candidates.last else { return outcome }
        precondition(first >= 0 && last < pageCount, "pages \(first)...\(last) outside the region of \(pageCount)")
        try ensureStillSameBackend()
        let before = try allocatedBytes()
        if let layout = hugePageLayout {
            try punchWholeHugePages(of: candidates, layout: layout, into: &outcome, while: shouldContinue)
        } else {
            try punchPages(candidates, into: &outcome, while: shouldContinue)
        }
        outcome.bytesFreed = max(0, before - (try allocatedBytes()))
        return outcome
    }

    /// The longest contiguous run verified before it is punched.
    public static let maximumRunPages = 64

    private func punchPages(_ candidates: [Int], into outcome: inout ZeroPageReclaim,
                            while shouldContinue: () -> Bool) throws(BackendError) {
        let verifier = ZeroVerifier(pages: 1)
        var run: Range<Int>?
        func flush() throws(BackendError) {
            guard let range = run else { return }
            // Asked once more just before the punch of a verified run.
            guard shouldContinue() else {
                outcome.pagesPunched -= range.count
                outcome.stoppedEarly = true
                run = nil
                return
            }
            try punch(range)
            outcome.ranges += 1
            outcome.punched.append(range)
            run = nil
        }
        for page in candidates {
            guard shouldContinue() else {
                // Verified pages of the run not punched: the state may have changed under us.
                if let range = run { outcome.pagesPunched -= range.count }
                run = nil
                outcome.stoppedEarly = true
                return
            }
            guard try verifier.isResidentAndZero(page..<(page + 1), in: self) else {
                outcome.pagesChanged += 1
                continue
            }
            outcome.pagesPunched += 1
            if let current = run, current.upperBound == page, current.count < Self.maximumRunPages {
                run = current.lowerBound..<(page + 1)
            } else {
                try flush()
                run = page..<(page + 1)
            }
        }
        try flush()
    }

    private func punchWholeHugePages(of candidates: [Int], layout: HugePageLayout,
                                     into outcome: inout ZeroPageReclaim, while shouldContinue: () -> Bool) throws(BackendError) {
        let whole = layout.wholeHugePages(in: candidates)
        outcome.pagesSkippedPartialHugePage = candidates.count - whole.count * layout.pagesPerHugePage
        guard !whole.isEmpty else { return }
        // A 1 GiB huge page is read 2 MiB at a time.
        let verifier = ZeroVerifier(pages: min(layout.pagesPerHugePage, 512))
        for hugePage in whole {
            guard shouldContinue() else {
                outcome.stoppedEarly = true
                return
            }
            // Asked again per chunk of the verify and just before the punch: a 1 GiB page takes
            // long to read, and an outside resume may come in between.
            guard let zero = try verifier.isResidentAndZero(hugePage, in: self, while: shouldContinue) else {
                outcome.stoppedEarly = true
                return
            }
            guard zero else {
                outcome.pagesChanged += hugePage.count
                continue
            }
            guard shouldContinue() else {
                outcome.stoppedEarly = true
                return
            }
            try punch(hugePage)
            outcome.pagesPunched += hugePage.count
            outcome.ranges += 1
            outcome.punched.append(hugePage)
        }
    }

    private func punch(_ pages: Range<Int>) throws(BackendError) {
        do {
            try LinuxCalls.punchHole(descriptor, offset: fileOffset + pages.lowerBound * pageSize, length: pages.count * pageSize)
        } catch {
            throw .system(error)
        }
    }

    /// Allocates reclaimed ranges again (`samepage run unmerge`): holes in `pages` become
    /// zero-filled pages backed by memory, as before the reclaim. Safe while the guest runs:
    /// allocating never changes what the guest reads.
    ///
    /// - Throws: `.notWritable` on a region opened `.readOnly`.
    public func repopulate(_ pages: Range<Int>) throws(BackendError) {
        guard access == .readWrite else { throw .notWritable(backend: backendID) }
        guard !pages.isEmpty else { return }
        do {
            try LinuxCalls.allocate(descriptor, offset: fileOffset + pages.lowerBound * pageSize, length: pages.count * pageSize)
        } catch {
            throw .system(error)
        }
    }
}

/// Checks runs of pages for being resident and all zero, with buffers for up to `pages`
/// pages at a time, allocated once per reclaim.
private final class ZeroVerifier {
    let chunkPages: Int
    let buffer: UnsafeMutableRawBufferPointer
    let vector: UnsafeMutableBufferPointer<UInt8>

    init(pages: Int) {
        chunkPages = pages
        buffer = .allocate(byteCount: pages * pageSize, alignment: pageSize)
        vector = .allocate(capacity: pages)
    }

    deinit {
        buffer.deallocate()
        vector.deallocate()
    }

    /// Whether every page of `pages` is resident and all zero. A page that is not resident
    /// (swapped out, already a hole) is not read: reading would swap it in.
    func isResidentAndZero(_ pages: Range<Int>, in region: GuestRegion) throws(BackendError) -> Bool {
        try isResidentAndZero(pages, in: region, while: { true })!
    }

    /// As above, asking `shouldContinue` before each chunk; nil once it says stop.
    func isResidentAndZero(_ pages: Range<Int>, in region: GuestRegion, while shouldContinue: () -> Bool) throws(BackendError) -> Bool? {
        for start in stride(from: pages.lowerBound, to: pages.upperBound, by: chunkPages) {
            guard shouldContinue() else { return nil }
            let chunk = start..<min(start + chunkPages, pages.upperBound)
            do {
                try region.residency(of: chunk, into: vector)
                guard vector[..<chunk.count].allSatisfy({ $0 & 1 != 0 }) else { return false }
                try region.read(chunk, into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<(chunk.count * pageSize)]))
            } catch let error as BackendError {
                throw error
            } catch {
                throw .system(SystemError(errno: .ioError, operation: "\(error)"))
            }
            for page in 0..<chunk.count where !isZeroPage(buffer.baseAddress! + page * pageSize) {
                return false
            }
        }
        return true
    }
}

import Glibc
import LinuxSystem
import SamepageCore

// # Which pages of a process are in RAM: /proc/PID/pagemap
//
// mincore(2) answers only for the caller's own page tables, and a private (anonymous) page
// of QEMU exists in QEMU's page tables alone: no mapping of ours could ever see it. The
// kernel's answer for another process is /proc/PID/pagemap (Documentation/admin-guide/mm/
// pagemap.rst): one 64-bit entry per virtual page, at byte offset (address / 4096) * 8,
//
//     bit 63      present in RAM
//     bit 62      swapped out (bits 0-4 the swap type, 5-54 the offset)
//     bit 61      a file page or shared anonymous page
//     bit 57      write-protected by userfaultfd
//     bit 56      exclusively mapped
//     bit 55      soft-dirty
//     bits 0-54   the page frame number of a present page; zero for a reader without
//                 CAP_SYS_ADMIN ("do not disclose physical addresses")
//
// A page never touched reads as all zeroes, as does an address no mapping covers: pagemap
// cannot tell "not yet written" from "not mapped", which is why the region above it is
// found in /proc/PID/maps first. Reading the entries faults nothing in: it walks the page
// tables under the mmap lock and copies what it finds.
//
// The file is read in batches, one pread per batch of up to `batchPages` entries (the
// kernel walks its own PAGEMAP_WALK_SIZE chunks inside one read), never an entry at a time.
// The descriptor holds the process's address space (the mm) from the moment it is opened,
// as /proc/PID/mem's does: it can never show another process that later got the same pid.
// Once that address space is torn down (the process exited) every read returns 0 bytes,
// which is why a short read is an error of its own and never taken for "no pages".

/// One entry of `/proc/PID/pagemap`: what the kernel knows of one virtual page of a process.
///
/// The layout is the kernel's (`fs/proc/task_mmu.c`, above `pagemap_read`), host-endian.
public struct PageMapEntry: RawRepresentable, Sendable, Hashable {
    public let rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Bit 63, `PM_PRESENT`: the page is in RAM, mapped by the process's page tables.
    public var isPresent: Bool { rawValue & (1 << 63) != 0 }
    /// Bit 62, `PM_SWAP`: the page is in swap (or a migration entry: on its way elsewhere).
    public var isSwapped: Bool { rawValue & (1 << 62) != 0 }
    /// Bit 61, `PM_FILE`: a page of a file (the page cache) or of shared anonymous memory.
    /// In a private file mapping, the pages the process never wrote.
    public var isFileOrSharedAnonymous: Bool { rawValue & (1 << 61) != 0 }
    /// Bit 56, `PM_MMAP_EXCLUSIVE`: mapped by this process only.
    public var isExclusivelyMapped: Bool { rawValue & (1 << 56) != 0 }
    /// Bit 55, `PM_SOFT_DIRTY`: written since soft-dirty bits were last cleared.
    public var isSoftDirty: Bool { rawValue & (1 << 55) != 0 }
    /// Bits 0-54 of a present page: its page frame number, which reads as 0 unless the
    /// reader has CAP_SYS_ADMIN. Nil for a page that is not present (the bits then hold a
    /// swap entry, or nothing).
    public var frameNumber: UInt64? { isPresent ? rawValue & ((1 << 55) - 1) : nil }

    /// In RAM now, and so readable without a fault: present and not swapped. The one
    /// question residency asks.
    public var isInRAM: Bool { isPresent && !isSwapped }

    /// No kernel writes an entry both present and swapped: such a value is not a pagemap
    /// entry (a wrong offset, a file that is not a pagemap).
    public var isValid: Bool { !(isPresent && isSwapped) }
}

/// A read of `/proc/PID/pagemap` that failed or did not return what was asked.
public enum PageMapError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The pread failed; its errno. `ESRCH` never comes from a pagemap descriptor (an exited
    /// process reads as ``shortRead(what:offset:expected:got:)``).
    case system(SystemError)
    /// The file ended before the entries asked for: the process's address space is gone (it
    /// exited), or the range reaches past the top of the user address space.
    case shortRead(what: String, offset: Int, expected: Int, got: Int)
    /// Bytes that are not pagemap entries: not a whole number of entries, or an entry no
    /// kernel writes.
    case malformed(what: String, detail: String)

    public var description: String {
        switch self {
        case .system(let error): error.description
        case .shortRead(let what, let offset, let expected, let got):
            "\(what): read \(got) of \(expected) bytes at offset \(offset) (the process's memory is gone)"
        case .malformed(let what, let detail): "\(what): not pagemap entries: \(detail)"
        }
    }
}

/// An open `/proc/PID/pagemap`: which pages of a range of a process's address space are in
/// RAM, read in batches.
///
/// `~Copyable`: the descriptor is this value's, closed with it. It stays bound to the address
/// space it was opened on (see the essay above), so a pid reused by another process is never
/// read through it. Sendable: its calls are `pread`s, which are thread-safe.
public struct ProcessPageMap: ~Copyable, Sendable {
    /// Entries read by one `pread`: 32 KiB of entries, 16 MiB of address space.
    public static let batchPages = 4096

    /// The process whose pagemap this is (as it was when opened).
    public let pid: pid_t
    /// How errors name the file (`pagemap of 4242`).
    let what: String
    private let file: OwnedDescriptor

    /// Opens `/proc/PID/pagemap` (needs `PTRACE_MODE_READ` over the process: root, or the
    /// same user without Yama's restrictions).
    ///
    /// The corresponding C function is `open`.
    public init(pid: pid_t) throws(SystemError) {
        self.init(taking: try OwnedDescriptor.open("/proc/\(pid)/pagemap", .readOnly), pid: pid)
    }

    /// Takes over an open descriptor of a pagemap, or, in tests, of any file posing as one.
    init(taking file: consuming OwnedDescriptor, pid: pid_t, what: String? = nil) {
        self.file = file
        self.pid = pid
        self.what = what ?? "pagemap of \(pid)"
    }

    /// Fills `vector[i]` for the page at `addresses.lowerBound + i * pageSize`: bit 0 set when
    /// the page is in RAM (present and not swapped), as mincore(2) would for the process.
    /// `addresses` is page-aligned and `vector` holds at least one byte per page.
    ///
    /// - Complexity: one `pread` per ``batchPages`` pages.
    /// - Throws: ``PageMapError``, ``PageMapError/shortRead(what:offset:expected:got:)`` once
    ///   the process has exited.
    public func residency(ofPagesAt addresses: Range<UInt64>, into vector: UnsafeMutableBufferPointer<UInt8>) throws(PageMapError) {
        try forEachBatch(addresses) { (done, bytes) throws(PageMapError) in
            let pages = bytes.count / 8
            try Self.decodeResidency(bytes, into: UnsafeMutableBufferPointer(rebasing: vector[done..<(done + pages)]), what: what)
            return true
        }
    }

    /// Whether every page at `addresses` is in RAM: the check made right before a copy.
    ///
    /// - Complexity: one `pread` per ``batchPages`` pages.
    public func allInRAM(_ addresses: Range<UInt64>) throws(PageMapError) -> Bool {
        var all = true
        try forEachBatch(addresses) { (_, bytes) throws(PageMapError) in
            for index in 0..<(bytes.count / 8) where !(try Self.entry(bytes, index, what: what).isInRAM) {
                all = false
                return false
            }
            return true
        }
        return all
    }

    /// The entries of the pages at `addresses`, in order: for tests and diagnostics.
    ///
    /// - Complexity: one `pread` per ``batchPages`` pages, O(n) memory.
    public func entries(ofPagesAt addresses: Range<UInt64>) throws(PageMapError) -> [PageMapEntry] {
        var entries: [PageMapEntry] = []
        try forEachBatch(addresses) { (_, bytes) throws(PageMapError) in
            for index in 0..<(bytes.count / 8) { entries.append(try Self.entry(bytes, index, what: what)) }
            return true
        }
        return entries
    }

    /// Reads the entries of `addresses` a batch at a time (one `pread` each, more only if the
    /// kernel returns part of a batch) and hands each to `body` with the number of pages
    /// before it, until `body` returns false.
    private func forEachBatch(_ addresses: Range<UInt64>,
                              _ body: (Int, UnsafeRawBufferPointer) throws(PageMapError) -> Bool) throws(PageMapError) {
        precondition(addresses.lowerBound % UInt64(pageSize) == 0 && addresses.upperBound % UInt64(pageSize) == 0,
                     "pagemap range \(addresses) is not page-aligned")
        let count = Int((addresses.upperBound - addresses.lowerBound) / UInt64(pageSize))
        guard count > 0 else { return }
        let firstPage = Int(addresses.lowerBound / UInt64(pageSize))
        try withUnsafeTemporaryAllocation(byteCount: min(count, Self.batchPages) * 8, alignment: 8) { (buffer) throws(PageMapError) in
            var done = 0
            while done < count {
                let pages = min(Self.batchPages, count - done)
                let bytes = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<(pages * 8)])
                let offset = (firstPage + done) * 8
                switch preadFully(file.descriptor, into: bytes, at: offset) {
                case .complete: break
                case .endOfFile(let end): throw .shortRead(what: what, offset: offset, expected: bytes.count, got: end - offset)
                case .failed(let errno): throw .system(SystemError(errno: errno, operation: "pread \(what)"))
                }
                guard try body(done, UnsafeRawBufferPointer(bytes)) else { return }
                done += pages
            }
        }
    }

    /// Decodes raw pagemap bytes into a residency vector: `vector[i]` gets bit 0 set when
    /// entry `i` is in RAM (present, not swapped), and is cleared otherwise. Pure, for tests.
    ///
    /// - Throws: ``PageMapError/malformed(what:detail:)`` when `bytes` is not exactly one
    ///   entry per byte of `vector`, or holds an entry no kernel writes (present and swapped).
    public static func decodeResidency(_ bytes: UnsafeRawBufferPointer, into vector: UnsafeMutableBufferPointer<UInt8>,
                                       what: String = "pagemap") throws(PageMapError) {
        guard bytes.count % 8 == 0 else {
            throw .malformed(what: what, detail: "\(bytes.count) bytes is not a whole number of 8-byte entries")
        }
        guard bytes.count / 8 == vector.count else {
            throw .malformed(what: what, detail: "\(bytes.count / 8) entries for \(vector.count) pages")
        }
        for index in 0..<vector.count {
            vector[index] = try entry(bytes, index, what: what).isInRAM ? 1 : 0
        }
    }

    private static func entry(_ bytes: UnsafeRawBufferPointer, _ index: Int, what: String) throws(PageMapError) -> PageMapEntry {
        let entry = PageMapEntry(rawValue: bytes.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self))
        guard entry.isValid else {
            throw .malformed(what: what, detail: "entry \(index) is 0x\(String(entry.rawValue, radix: 16)), both present and swapped")
        }
        return entry
    }
}

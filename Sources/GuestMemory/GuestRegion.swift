import Glibc
import LinuxSystem
import SamepageCore

/// How a RAM backend is opened: read-only for scanning, read-write for hole punching.
public enum BackendAccess: Sendable, Hashable {
    case readOnly, readWrite
}

/// What kind of memory backs a guest region, from `fstatfs` of the backend.
public enum BackendKind: Sendable, Hashable, CustomStringConvertible {
    /// A memfd on the kernel's internal tmpfs.
    case memfd
    /// A file on a tmpfs (`/dev/shm`, a tmpfs mem-path).
    case sharedMemoryFile
    /// hugetlbfs (or a hugetlb memfd), with its huge page size in bytes.
    case hugetlbfs(pageSize: Int)
    /// A file on a disk filesystem (`f_type` of its statfs).
    case diskFile(filesystemType: Int)

    public var description: String {
        switch self {
        case .memfd: "memfd"
        case .sharedMemoryFile: "tmpfs file"
        case .hugetlbfs(let size): "hugetlbfs (\(size / 1024) KiB pages)"
        case .diskFile(let type): "disk file (fs 0x\(String(type, radix: 16)))"
        }
    }
}

/// A backend that no longer matches the region opened on it, or that cannot be read.
public enum BackendError: Error, Sendable, Hashable, CustomStringConvertible {
    case system(SystemError)
    /// The file opened through map_files is not the one the maps line names (QEMU remapped).
    case identityMismatch(backend: String, expected: FileIdentity, found: FileIdentity)
    /// The mapping is not of a regular file (a device, a socket).
    case notRegularFile(backend: String)
    /// A read reached the end of the file: the backend shrank under the region.
    case truncated(backend: String, regionEnd: Int, fileSize: Int)
    /// The backend's size changed since the region was opened.
    case sizeChanged(backend: String, from: Int, to: Int)
    /// The process that mapped the backend has exited.
    case processExited(backend: String)
    /// A change to the backend (a reclaim, a repopulate) on a region opened `.readOnly`.
    case notWritable(backend: String)
    /// The process no longer maps the region at this address (a private region whose
    /// memory was unmapped: a DIMM unplugged).
    case unmapped(backend: String, address: UInt64)
    /// The mapping process's pagemap returned something that is not pagemap entries.
    case pagemap(backend: String, PageMapError)

    public var description: String {
        switch self {
        case .system(let error): error.description
        case .identityMismatch(let backend, let expected, let found):
            "\(backend): opened file \(found) is not the mapped file \(expected)"
        case .notRegularFile(let backend): "\(backend): not a regular file"
        case .truncated(let backend, let end, let size):
            "\(backend): backend truncated to \(size) bytes under a region ending at \(end)"
        case .sizeChanged(let backend, let from, let to): "\(backend): backend size changed from \(from) to \(to) bytes"
        case .processExited(let backend): "\(backend): the process mapping it has exited"
        case .notWritable(let backend): "\(backend): opened read-only, cannot be changed"
        case .unmapped(let backend, let address): "\(backend): the process no longer maps 0x\(String(address, radix: 16))"
        case .pagemap(let backend, let error): "\(backend): \(error)"
        }
    }
}

extension BackendError {
    /// The error of a region whose mapping process's pagemap failed. A short read is the
    /// process gone: a pagemap descriptor reads nothing once the address space it holds is
    /// torn down (an exit, or an exec), which happens before its pidfd turns readable.
    init(pagemap error: PageMapError, backend: String) {
        switch error {
        case .shortRead: self = .processExited(backend: backend)
        case .system(let system): self = .system(system)
        case .malformed: self = .pagemap(backend: backend, error)
        }
    }
}

/// One RAM backend of a guest, opened through `/proc/PID/map_files` of the process that maps
/// it, as the engine's page source.
///
/// Guest memory is never touched through a mapping: a read fault on a shared mapping would
/// allocate a hole or swap a page in, and a truncated backend would raise SIGBUS. The region
/// keeps a `PROT_READ` mapping of the backend that it never reads, only asks `mincore(2)`
/// about (on hugetlbfs, where mincore sees only the caller's own page tables, the mapping
/// process's `/proc/PID/pagemap` is read instead), and reads contents with `pread`, which
/// neither allocates holes nor faults. Closing the region (its last reference) unmaps and
/// closes everything, releasing the guest's RAM once QEMU is gone.
///
/// All stored state is immutable and every call is a thread-safe system call, so a region may
/// be used from several threads.
public final class GuestRegion: PageSource, @unchecked Sendable {
    /// The QEMU memory-backend id (`pc.ram`, `ram-node0`, `memdimm0`), or a caller's label.
    public let backendID: String
    public let kind: BackendKind
    /// The backend's identity, as in the maps line and `fstat` of the open file.
    public let file: FileIdentity
    /// The path of the mapping in the maps file (`/memfd:pc.ram`, `/dev/shm/guest`).
    public let path: String?
    /// Where the region starts in the backend file, in bytes.
    public let fileOffset: Int
    /// The region's size in bytes (a multiple of `pageSize`).
    public let size: Int
    public let pageCount: Int
    public let access: BackendAccess
    /// The process that maps it and the address of its mapping there.
    public let pid: pid_t
    public let processAddresses: Range<UInt64>

    /// The open backend: the region's own, closed with it and by nothing else.
    private let backend: OwnedDescriptor
    /// How residency is read.
    private let residencySource: ResidencySource
    /// A pidfd of `pid`, when the region was opened through a ``QEMUProcess``.
    private let processDescriptor: OwnedDescriptor?
    private let fileSizeAtOpen: Int

    /// Where `residency(of:into:)` asks which pages are in memory.
    private enum ResidencySource: ~Copyable {
        /// A `PROT_READ` mapping of the region, never read: only `mincore(2)` asks about it.
        case mapping(OwnedMapping)
        /// The mapping process's `/proc/PID/pagemap`, on hugetlbfs, where `mincore` sees only
        /// the caller's own page tables (an untouched mapping would report nothing resident).
        case pagemap(ProcessPageMap)
    }

    /// The backend's descriptor, for this module's calls (`pread`, `fallocate`): valid for the
    /// life of the region, which alone closes it.
    var descriptor: FileDescriptor { backend.descriptor }

    /// Opens the backend of `mapping`, a shared file mapping of process `pid`, through
    /// `/proc/PID/map_files` (needs CAP_CHECKPOINT_RESTORE, or CAP_SYS_ADMIN before Linux 5.9), and checks that the opened file is the
    /// mapped one.
    public convenience init(mapping: MemoryMapping, of pid: pid_t, backendID: String,
                            access: BackendAccess = .readOnly) throws(BackendError) {
        try self.init(mapping: mapping, of: pid, backendID: backendID, access: access, processDescriptor: nil)
    }

    /// As the public initializer; `processDescriptor`, a pidfd of `pid`, becomes the region's.
    ///
    /// Whatever it has opened or mapped when it throws is closed and unmapped by its owner.
    init(mapping: MemoryMapping, of pid: pid_t, backendID: String, access: BackendAccess,
         processDescriptor: consuming OwnedDescriptor?) throws(BackendError) {
        precondition(mapping.length > 0 && mapping.length % UInt64(pageSize) == 0, "mapping of \(mapping.length) bytes")
        let mapFile = "/proc/\(pid)/map_files/\(mapping.mapFilesName)"
        let backend = try Self.check { () throws(SystemError) in
            try OwnedDescriptor.open(mapFile, access == .readOnly ? .readOnly : .readWrite)
        }
        let descriptor = backend.descriptor

        var status = stat()
        try Self.check { () throws(SystemError) in try retryingInterrupts("fstat \(mapFile)") { fstat(descriptor.rawValue, &status) } }
        guard status.st_mode & S_IFMT == S_IFREG else { throw .notRegularFile(backend: backendID) }
        guard FileIdentity(status) == mapping.file else {
            throw .identityMismatch(backend: backendID, expected: mapping.file, found: FileIdentity(status))
        }
        let fileSystem = try Self.check { () throws(SystemError) in try LinuxCalls.fileSystem(of: descriptor) }
        let kind: BackendKind = switch fileSystem.type {
        case LinuxCalls.hugetlbfsMagic: .hugetlbfs(pageSize: fileSystem.blockSize)
        case LinuxCalls.tmpfsMagic: mapping.isMemfd ? .memfd : .sharedMemoryFile
        default: .diskFile(filesystemType: fileSystem.type)
        }

        let size = Int(mapping.length)
        let residencySource: ResidencySource
        if case .hugetlbfs = kind {
            let pagemap = try Self.check { () throws(SystemError) in try ProcessPageMap(pid: pid) }
            residencySource = .pagemap(pagemap)
        } else {
            let mapped = try Self.check { () throws(SystemError) in
                try OwnedMapping(size: size, protection: PROT_READ, flags: MAP_SHARED, of: descriptor,
                                 at: Int(mapping.fileOffset), "mmap \(mapFile)")
            }
            // A core dump of this process must not read through it either.
            _ = madvise(mapped.address, size, MADV_DONTDUMP)
            residencySource = .mapping(mapped)
        }

        self.backendID = backendID
        self.kind = kind
        self.file = mapping.file
        self.path = mapping.path
        self.fileOffset = Int(mapping.fileOffset)
        self.size = size
        self.pageCount = size / pageSize
        self.access = access
        self.pid = pid
        self.processAddresses = mapping.addresses
        self.backend = backend
        self.fileSizeAtOpen = Int(status.st_size)
        self.residencySource = residencySource
        self.processDescriptor = processDescriptor
    }

    /// `mincore(2)` on the untouched mapping (pagemap of the mapping process on hugetlbfs):
    /// bit 0 of `vector[i]` is set when page `pages.lowerBound + i` is in memory. A page
    /// swapped out, a hole, or a page past a truncated end reads as not resident.
    public func residency(of pages: Range<Int>, into vector: UnsafeMutableBufferPointer<UInt8>) throws {
        precondition(pages.lowerBound >= 0 && pages.upperBound <= pageCount && vector.count >= pages.count)
        guard !pages.isEmpty else { return }
        // A backend cut short under us: pages past its end would read as holes and the region
        // would silently empty out. Say so instead (one fstat per call, per 2 MiB at most).
        let regionEnd = fileOffset + pages.upperBound * pageSize
        let fileSize = try currentFileSize()
        if fileSize < regionEnd {
            throw BackendError.truncated(backend: backendID, regionEnd: regionEnd, fileSize: fileSize)
        }
        switch residencySource {
        case .mapping(let mapping):
            let start = mapping.address + pages.lowerBound * pageSize
            while mincore(start, pages.count * pageSize, vector.baseAddress) != 0 {
                let error = SystemError("mincore \(backendID)")
                // EAGAIN: the kernel was short of memory for a moment.
                guard error.errno == .resourceTemporarilyUnavailable || error.errno == .interrupted else {
                    throw BackendError.system(error)
                }
            }
        case .pagemap(let pagemap):
            let start = processAddresses.lowerBound + UInt64(pages.lowerBound * pageSize)
            do {
                try pagemap.residency(ofPagesAt: start..<(start + UInt64(pages.count * pageSize)),
                                      into: UnsafeMutableBufferPointer(rebasing: vector[..<pages.count]))
            } catch {
                throw BackendError(pagemap: error, backend: backendID)
            }
        }
    }

    /// Reads pages with `pread`, looping over partial reads. Throws `.truncated` when the
    /// backend ends before the run does.
    public func read(_ pages: Range<Int>, into buffer: UnsafeMutableRawBufferPointer) throws {
        precondition(pages.lowerBound >= 0 && pages.upperBound <= pageCount && buffer.count == pages.count * pageSize)
        try readFully(descriptor, into: buffer, at: fileOffset + pages.lowerBound * pageSize, what: backendID) { offset in
            .truncated(backend: backendID, regionEnd: fileOffset + pages.upperBound * pageSize, fileSize: (try? currentFileSize()) ?? offset)
        }
    }

    private func readFully(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, at offset: Int, what: String,
                           atEnd: (Int) -> BackendError) throws(BackendError) {
        switch preadFully(fd, into: buffer, at: offset) {
        case .complete: return
        case .endOfFile(let end): throw atEnd(end)
        case .failed(let error) where error == .noSuchProcess: throw .processExited(backend: backendID)
        case .failed(let error): throw .system(SystemError(errno: error, operation: "pread \(what)"))
        }
    }

    /// The bytes the backend has allocated (`st_blocks`), for measuring what a reclaim freed.
    public func allocatedBytes() throws(BackendError) -> Int {
        try Self.check { () throws(SystemError) in Int(try status().st_blocks) * 512 }
    }

    /// Checks that this region still describes what the guest uses: the mapping process is
    /// alive, its mapping at the same address is still this file (device and inode), and
    /// the file's size is unchanged. Call before any change to the backend.
    public func ensureStillSameBackend() throws(BackendError) {
        switch processDescriptor {
        case .some(let pidfd) where QEMUProcess.hasExited(pidfd: pidfd.descriptor): throw .processExited(backend: backendID)
        default: break
        }
        var mapped = stat()
        let mapFile = "/proc/\(pid)/map_files/\(String(processAddresses.lowerBound, radix: 16))-\(String(processAddresses.upperBound, radix: 16))"
        if stat(mapFile, &mapped) != 0 {
            let error = SystemError("stat \(mapFile)")
            let gone = error.errno == .noSuchFileOrDirectory || error.errno == .noSuchProcess
            throw gone ? .processExited(backend: backendID) : .system(error)
        }
        guard FileIdentity(mapped) == file else {
            throw .identityMismatch(backend: backendID, expected: file, found: FileIdentity(mapped))
        }
        let fileSize = try currentFileSize()
        guard fileSize == fileSizeAtOpen else { throw .sizeChanged(backend: backendID, from: fileSizeAtOpen, to: fileSize) }
    }

    private func currentFileSize() throws(BackendError) -> Int {
        try Self.check { () throws(SystemError) in Int(try status().st_size) }
    }

    private func status() throws(SystemError) -> stat {
        var status = stat()
        try retryingInterrupts("fstat \(backendID)") { fstat(descriptor.rawValue, &status) }
        return status
    }

    @discardableResult
    private static func check<T: ~Copyable>(_ body: () throws(SystemError) -> T) throws(BackendError) -> T {
        do { return try body() } catch { throw .system(error) }
    }
}

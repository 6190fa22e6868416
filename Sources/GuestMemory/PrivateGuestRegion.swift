import Glibc
import LinuxSystem
import SamepageCore
import Synchronization

// # Reading a guest's private RAM
//
// Most guests have private RAM: anonymous memory of their QEMU (memory-backend-ram, plain
// `-m`), or a file QEMU mapped MAP_PRIVATE (libvirt's memory_backing_dir with access
// private), whose written pages are anonymous copies. There is no backend to open: the
// guest's pages exist only in QEMU's page tables, at the address range /proc/PID/maps shows.
// GuestRegion's way (pread of the backend, mincore of an untouched mapping of it) cannot see
// them, so this region reads the process instead:
//
// - Residency is QEMU's /proc/PID/pagemap (ProcessPageMap): a page is resident when it is
//   present and not swapped. Untouched pages, swapped pages and pages the balloon gave back
//   are not, and are never read.
//
// - Contents are copied with process_vm_readv(2), one call per run of resident pages. It
//   copies straight from QEMU's pages into our buffer, pinning a batch of them at a time;
//   a read of /proc/PID/mem would do the same work a page at a time through a kernel bounce
//   page. When process_vm_readv is refused (ENOSYS: a kernel without
//   CONFIG_CROSS_MEMORY_ATTACH; EPERM: a seccomp policy or LSM that forbids it), the copy
//   falls back to pread of /proc/PID/mem, for the rest of the region's life.
//
// - Identity. process_vm_readv names the process by pid, and a pid is reused once its
//   process is reaped. The region keeps a pidfd and checks it after every copy: a pidfd that
//   is not readable means the process had not exited, so its pid could not have been freed
//   and the copy was of our QEMU; otherwise the bytes are thrown away and the region reports
//   `processExited`. The pagemap and /proc/PID/mem descriptors, opened once at creation,
//   are bound to QEMU's address space itself (the kernel takes the mm at open) and can never
//   show another process; once that address space is gone they read 0 bytes, which is also
//   reported as `processExited`.
//
// # The race that is left
//
// A copy faults in any page that is not present, as QEMU's own read would, and nothing lets
// process_vm_readv refuse to (the kernel's FOLL_NOFAULT is not offered to user space). A
// page that pagemap reported present can leave memory before the copy reaches it: reclaim
// swaps it out, the balloon or free page reporting discards it, compaction or NUMA
// balancing migrates it (briefly not present). Reading it then swaps it back in, maps the
// zero page (and page tables) over a discarded page, or rereads a private file page.
//
// So the window is bounded, not closed: right before each copy, pagemap is read again for
// that run (one pread), and a run with any page not in RAM is not copied: `read` throws
// `NoLongerResident` and the engine skips the run this pass. What remains is the time
// between that pread and the copy pinning the pages, microseconds, in which reclaim would
// have to take exactly those pages. The worst it can do is bring back a run's pages (at
// most Engine.readBatchPages, 128 KiB) that the host had just reclaimed; the guest's memory
// content is the same either way.

/// What a guest's private RAM is a mapping of.
public enum PrivateMemoryKind: Sendable, Hashable, CustomStringConvertible {
    /// Anonymous memory of the process (`memory-backend-ram`, plain `-m`).
    case anonymous
    /// A file mapped MAP_PRIVATE (`memory-backend-file` or `-memfd` with `share=off`): the
    /// pages the guest wrote are anonymous copies, the others the file's.
    case privateFile(path: String?, file: FileIdentity)

    public var description: String {
        switch self {
        case .anonymous: "anonymous memory"
        case .privateFile(let path, _): "private mapping of \(path ?? "a file")"
        }
    }
}

/// How a ``PrivateGuestRegion`` copies pages out of the process.
public enum PrivateCopyMethod: Sendable, Hashable {
    /// `process_vm_readv(2)`, one call per run.
    case processVMReadv
    /// `pread` of `/proc/PID/mem`, after process_vm_readv was refused.
    case procMem
}

/// One RAM region of a guest whose RAM is private memory of its QEMU process: a range of
/// QEMU's address space, as the engine's page source.
///
/// Residency comes from QEMU's `/proc/PID/pagemap`; contents are copied with
/// `process_vm_readv` (or `pread` of `/proc/PID/mem`), and only of runs that pagemap shows in
/// RAM right before the copy (see the essay above for what is left of the race). Nothing of
/// QEMU is ever mapped into this process. The region can only be read: private memory has no
/// backend to punch holes in, so zero-page reclaim does not apply (the kernel's KSM, with
/// `use_zero_pages`, is what merges it).
///
/// All stored state is immutable except which copy method is in use (an atomic), and every
/// call is a system call, so a region may be used from several threads.
public final class PrivateGuestRegion: PageSource, Sendable {
    /// The QEMU memory-backend id (`pc.ram`, `ram-node0`, `memdimm0`), or a caller's label.
    public let backendID: String
    public let kind: PrivateMemoryKind
    /// The process whose memory this is, and the addresses of the region there.
    public let pid: pid_t
    public let processAddresses: Range<UInt64>
    /// The region's size in bytes (a multiple of `pageSize`).
    public let size: Int
    public let pageCount: Int

    /// QEMU's pagemap, bound to its address space.
    private let pagemap: ProcessPageMap
    /// `/proc/PID/mem`, bound to the same address space: the copy's fallback.
    private let memory: OwnedDescriptor
    /// A pidfd of `pid`: the identity check after every `process_vm_readv`.
    private let processDescriptor: OwnedDescriptor
    /// Set once process_vm_readv was refused: copies go through `memory` from then on.
    private let copiesThroughMemFile = Atomic<Bool>(false)

    /// How pages are being copied now.
    public var copyMethod: PrivateCopyMethod {
        copiesThroughMemFile.load(ordering: .relaxed) ? .procMem : .processVMReadv
    }

    /// Opens a region over `mapping` (a private mapping, or several adjacent ones joined) of
    /// process `pid`: a pidfd of it, its pagemap and its `/proc/PID/mem`. Needs
    /// `PTRACE_MODE_ATTACH` over the process (root, or CAP_SYS_PTRACE).
    ///
    /// `pid` must name the process now: the pidfd is opened from it, and everything after is
    /// checked against the pidfd. ``QEMUProcess/openRAM(expecting:access:)`` passes its own
    /// pidfd instead, so that the region is of the process it read the maps of.
    ///
    /// - Throws: ``BackendError/processExited(backend:)`` if the process is gone,
    ///   ``BackendError/system(_:)`` for other failures (`EACCES`, `EPERM`: not allowed).
    public convenience init(mapping: MemoryMapping, of pid: pid_t, backendID: String) throws(BackendError) {
        let pidfd: OwnedDescriptor
        do { pidfd = try LinuxCalls.pidfdOpen(pid) } catch {
            throw error.errno == .noSuchProcess ? .processExited(backend: backendID) : .system(error)
        }
        try self.init(mapping: mapping, of: pid, backendID: backendID, processDescriptor: pidfd)
    }

    /// As the public initializer; `processDescriptor`, a pidfd of `pid`, becomes the region's.
    /// `copyMethod` `.procMem` starts with the fallback, for tests.
    init(mapping: MemoryMapping, of pid: pid_t, backendID: String,
         processDescriptor: consuming OwnedDescriptor, copyMethod: PrivateCopyMethod = .processVMReadv) throws(BackendError) {
        precondition(mapping.length > 0 && mapping.length % UInt64(pageSize) == 0
                     && mapping.addresses.lowerBound % UInt64(pageSize) == 0, "mapping \(mapping.addresses)")
        func open(_ name: String) throws(BackendError) -> OwnedDescriptor {
            do { return try OwnedDescriptor.open("/proc/\(pid)/\(name)", .readOnly) } catch {
                let gone = error.errno == .noSuchFileOrDirectory || error.errno == .noSuchProcess
                throw gone ? .processExited(backend: backendID) : .system(error)
            }
        }
        let pagemap = ProcessPageMap(taking: try open("pagemap"), pid: pid)
        let memory = try open("mem")
        // Opened after the pidfd and before this check: all three are of the same process.
        guard !QEMUProcess.hasExited(pidfd: processDescriptor.descriptor) else { throw .processExited(backend: backendID) }

        self.backendID = backendID
        self.kind = mapping.file.inode == 0 ? .anonymous : .privateFile(path: mapping.path, file: mapping.file)
        self.pid = pid
        self.processAddresses = mapping.addresses
        self.size = Int(mapping.length)
        self.pageCount = size / pageSize
        self.pagemap = pagemap
        self.memory = memory
        self.processDescriptor = processDescriptor
        if copyMethod == .procMem { copiesThroughMemFile.store(true, ordering: .relaxed) }
    }

    /// Whether the process has exited (its pidfd is readable).
    public var hasExited: Bool { QEMUProcess.hasExited(pidfd: processDescriptor.descriptor) }

    private func addresses(of pages: Range<Int>) -> Range<UInt64> {
        (processAddresses.lowerBound + UInt64(pages.lowerBound * pageSize))..<(processAddresses.lowerBound + UInt64(pages.upperBound * pageSize))
    }

    /// QEMU's pagemap for the pages: bit 0 of `vector[i]` is set when page
    /// `pages.lowerBound + i` is present and not swapped. Never faults anything in.
    ///
    /// - Complexity: one `pread` per ``ProcessPageMap/batchPages`` pages.
    /// - Throws: ``BackendError/processExited(backend:)`` once the process is gone.
    public func residency(of pages: Range<Int>, into vector: UnsafeMutableBufferPointer<UInt8>) throws {
        precondition(pages.lowerBound >= 0 && pages.upperBound <= pageCount && vector.count >= pages.count)
        guard !pages.isEmpty else { return }
        do { try pagemap.residency(ofPagesAt: addresses(of: pages), into: UnsafeMutableBufferPointer(rebasing: vector[..<pages.count])) } catch {
            throw BackendError(pagemap: error, backend: backendID)
        }
    }

    /// Copies the run `pages`, after checking in pagemap that every page of it is still in
    /// RAM: one `pread` of pagemap, one `process_vm_readv` (or `pread` of `/proc/PID/mem`),
    /// one `poll` of the pidfd.
    ///
    /// - Throws: `NoLongerResident` when a page of the run left memory since `residency`
    ///   (nothing was copied); ``BackendError/processExited(backend:)`` when the process is
    ///   gone; ``BackendError/unmapped(backend:address:)`` when the process no longer maps
    ///   the run.
    public func read(_ pages: Range<Int>, into buffer: UnsafeMutableRawBufferPointer) throws {
        precondition(pages.lowerBound >= 0 && pages.upperBound <= pageCount && buffer.count == pages.count * pageSize)
        guard !pages.isEmpty else { return }
        let run = addresses(of: pages)
        let inRAM: Bool
        do { inRAM = try pagemap.allInRAM(run) } catch { throw BackendError(pagemap: error, backend: backendID) }
        guard inRAM else { throw NoLongerResident(pages: pages) }
        try copy(run, into: buffer)
        // After the copy, not before: a process alive now was alive all through it.
        guard !hasExited else { throw BackendError.processExited(backend: backendID) }
    }

    private func copy(_ run: Range<UInt64>, into buffer: UnsafeMutableRawBufferPointer) throws(BackendError) {
        guard !copiesThroughMemFile.load(ordering: .relaxed) else { return try copyThroughMemFile(run, into: buffer) }
        let copied: Int
        do { copied = try LinuxCalls.processVMRead(pid, into: buffer, at: run.lowerBound) } catch {
            switch error.errno {
            case .noFunction, .notPermitted:  // ENOSYS, EPERM
                copiesThroughMemFile.store(true, ordering: .relaxed)
                return try copyThroughMemFile(run, into: buffer)
            case .noSuchProcess: throw .processExited(backend: backendID)
            case .badAddress: throw .unmapped(backend: backendID, address: run.lowerBound)
            default: throw .system(error)
            }
        }
        // It stops at the first remote page that is not mapped.
        guard copied == buffer.count else { throw .unmapped(backend: backendID, address: run.lowerBound + UInt64(copied)) }
    }

    private func copyThroughMemFile(_ run: Range<UInt64>, into buffer: UnsafeMutableRawBufferPointer) throws(BackendError) {
        switch preadFully(memory.descriptor, into: buffer, at: Int(run.lowerBound)) {
        case .complete: return
        // The address space this descriptor holds is gone.
        case .endOfFile: throw .processExited(backend: backendID)
        // What /proc/PID/mem says of an address nothing maps.
        case .failed(let errno) where errno == .ioError: throw .unmapped(backend: backendID, address: run.lowerBound)
        case .failed(let errno): throw .system(SystemError(errno: errno, operation: "pread /proc/\(pid)/mem"))
        }
    }

    /// Checks that the process is alive and still maps the whole region, with mappings of
    /// the same kind (anonymous, or the same file) and readable. Reads `/proc/PID/maps`:
    /// call it on a timer or after a device event (a DIMM unplugged), not per page.
    ///
    /// pagemap cannot tell an unmapped range from an untouched one, so a region whose memory
    /// was unmapped would otherwise just read as empty.
    public func ensureStillMapped() throws(BackendError) {
        let mappings: [MemoryMapping]
        do { mappings = try MemoryMapping.read(pid: pid) } catch {
            let gone = error.errno == .noSuchFileOrDirectory || error.errno == .noSuchProcess
            throw gone || hasExited ? .processExited(backend: backendID) : .system(error)
        }
        guard !hasExited else { throw .processExited(backend: backendID) }
        let file: FileIdentity = switch kind {
        case .anonymous: FileIdentity(deviceMajor: 0, deviceMinor: 0, inode: 0)
        case .privateFile(_, let file): file
        }
        var covered = processAddresses.lowerBound
        for mapping in mappings where covered < processAddresses.upperBound && mapping.addresses.contains(covered) {
            guard mapping.readable, !mapping.shared, mapping.file == file else { break }
            covered = mapping.addresses.upperBound
        }
        guard covered >= processAddresses.upperBound else { throw .unmapped(backend: backendID, address: covered) }
    }

}

import Glibc
import LinuxSystem
import SamepageCore

/// A RAM region a guest should have, from its domain definition.
public struct ExpectedRegion: Sendable, Hashable {
    /// The QEMU memory-backend id if known (`ram-node0`, `memdimm0`); nil for main memory.
    public var backendID: String?
    /// Size in bytes.
    public var size: Int

    public init(backendID: String?, size: Int) {
        self.backendID = backendID
        self.size = size
    }
}

/// Why a guest's RAM cannot be mapped by Samepage.
public enum UnmappableReason: Error, Sendable, Hashable, CustomStringConvertible {
    /// RAM is private anonymous memory (no `<memoryBacking><source type='memfd|file'/>`);
    /// the kernel's own KSM can merge it.
    case anonymousRAM(backend: String?)
    /// RAM is a file or memfd mapped MAP_PRIVATE (no `<access mode='shared'/>`).
    case privateRAM(backend: String)
    /// /proc/PID/maps or map_files cannot be read: not root, or without CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE (CAP_SYS_ADMIN before Linux 5.9).
    case noPermission(SystemError)
    /// The QEMU process is gone (or never was: no pid file, not that guest's QEMU).
    case processGone
    /// The libvirt connection is to another host.
    case remoteConnection(uri: String)
    /// No shared mapping in QEMU matches the backend.
    case backendNotFound(backend: String, size: Int)
    /// QEMU's backend size differs from the domain definition's.
    case sizeMismatch(backend: String, expected: Int, found: Int)
    /// More private mappings of the region's size in QEMU than private RAM regions of that
    /// size: which of them is guest RAM cannot be told, so none is read. The candidates' start
    /// addresses.
    case ambiguousPrivateRAM(backend: String, size: Int, candidates: [UInt64])
    /// Any other failed system call.
    case failed(SystemError)

    package init(_ error: SystemError) {
        self = error.errno == .permissionDenied || error.errno == .notPermitted ? .noPermission(error) : .failed(error)
    }

    public var description: String {
        switch self {
        case .anonymousRAM(let backend):
            "RAM\(backend.map { " (\($0))" } ?? "") is anonymous memory; give it a memfd or file backend with shared access"
        case .privateRAM(let backend): "RAM backend \(backend) is mapped private; it needs <access mode='shared'/>"
        case .noPermission(let error): "no permission to map guest RAM: \(error)"
        case .processGone: "the guest's QEMU process is gone"
        case .remoteConnection(let uri): "the guest runs on another host (\(uri))"
        case .backendNotFound(let backend, let size): "no mapping of \(size) bytes for RAM backend \(backend) in QEMU"
        case .sizeMismatch(let backend, let expected, let found):
            "RAM backend \(backend) is \(found) bytes in QEMU, \(expected) in the domain definition"
        case .ambiguousPrivateRAM(let backend, let size, let candidates):
            "\(candidates.count) private mappings of \(size) bytes in QEMU (at \(candidates.map { "0x" + String($0, radix: 16) }.joined(separator: ", "))) could be RAM backend \(backend); refusing to guess"
        case .failed(let error): "cannot map guest RAM: \(error)"
        }
    }
}

/// How QEMU holds one RAM region of a guest.
public enum RAMPlacement: Sendable, Hashable {
    /// A shared file mapping (memfd, tmpfs or hugetlbfs file): opened through map_files as a
    /// ``GuestRegion``. Zero pages can be reclaimed.
    case shared
    /// Private memory of the process (anonymous, or a file mapped private), read in place as
    /// a ``PrivateGuestRegion``. Nothing can be reclaimed; the kernel's KSM can merge it.
    case privateMemory
}

/// One entry of a guest's RAM plan: which addresses of which QEMU process hold a RAM region.
public struct RAMPlanEntry: Sendable, Hashable {
    /// The QEMU memory-backend id (`pc.ram`, `ram-node0`, `memdimm0`), or `ramN` for a region
    /// without one (plain `-m`, a hot-plugged DIMM whose id the definition does not give).
    public var backendID: String
    /// The QEMU process.
    public var pid: pid_t
    /// QEMU's mapping of the region. For private memory, its addresses are the region's
    /// (adjacent areas joined when the kernel split one mapping), its file the backend's, or
    /// none (inode 0) for anonymous memory.
    public var mapping: MemoryMapping
    public var placement: RAMPlacement

    public init(backendID: String, pid: pid_t, mapping: MemoryMapping, placement: RAMPlacement) {
        self.backendID = backendID
        self.pid = pid
        self.mapping = mapping
        self.placement = placement
    }
}

/// One opened RAM region of a guest: a shared backend, or private memory of its QEMU.
public enum GuestRAMRegion: Sendable {
    /// A shared backend, opened through map_files: readable, and reclaimable when opened
    /// read-write.
    case shared(GuestRegion)
    /// Private memory of QEMU, read in place: accounted only, never reclaimed.
    case `private`(PrivateGuestRegion)

    /// The region as the engine's page source.
    public var source: any PageSource {
        switch self {
        case .shared(let region): region
        case .private(let region): region
        }
    }

    /// The shared backend, for reclaim; nil for private memory, which has none.
    public var sharedRegion: GuestRegion? {
        if case .shared(let region) = self { region } else { nil }
    }

    public var backendID: String {
        switch self {
        case .shared(let region): region.backendID
        case .private(let region): region.backendID
        }
    }

    /// The region's size in bytes.
    public var size: Int {
        switch self {
        case .shared(let region): region.size
        case .private(let region): region.size
        }
    }
}

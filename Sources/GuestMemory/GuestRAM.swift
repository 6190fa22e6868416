import LinuxSystem

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
    /// Any other failed system call.
    case failed(SystemError)

    init(_ error: SystemError) {
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
        case .backendNotFound(let backend, let size): "no shared mapping of \(size) bytes for RAM backend \(backend) in QEMU"
        case .sizeMismatch(let backend, let expected, let found):
            "RAM backend \(backend) is \(found) bytes in QEMU, \(expected) in the domain definition"
        case .failed(let error): "cannot map guest RAM: \(error)"
        }
    }
}

/// Pairs a guest's expected RAM regions with QEMU's backends and mappings. Pure, for testing.
enum GuestRAMPlan {
    struct Wanted {
        var id: String
        var size: Int
        var backend: MemoryBackendObject?
    }

    static func match(backends: [MemoryBackendObject], expected: [ExpectedRegion],
                      mappings: [MemoryMapping]) throws(UnmappableReason) -> [(id: String, mapping: MemoryMapping)] {
        let isRAM = { (backend: MemoryBackendObject) in !backend.id.hasPrefix("shmmem-") }
        var wanted: [Wanted] = []
        if expected.isEmpty {
            wanted = backends.filter(isRAM).map { Wanted(id: $0.id, size: $0.size, backend: $0) }
        } else {
            var unclaimed = backends.filter(isRAM)
            for (index, region) in expected.enumerated() {
                if let id = region.backendID, let found = unclaimed.firstIndex(where: { $0.id == id }) {
                    let backend = unclaimed.remove(at: found)
                    guard backend.size == region.size else {
                        throw .sizeMismatch(backend: id, expected: region.size, found: backend.size)
                    }
                    wanted.append(Wanted(id: id, size: region.size, backend: backend))
                } else if region.backendID == nil, let found = unclaimed.firstIndex(where: { $0.size == region.size }) {
                    let backend = unclaimed.remove(at: found)
                    wanted.append(Wanted(id: backend.id, size: region.size, backend: backend))
                } else if region.backendID == nil, let other = unclaimed.first, backends.count == expected.count {
                    throw .sizeMismatch(backend: other.id, expected: region.size, found: other.size)
                } else {
                    // Hot-plugged (object-add), so not on the command line.
                    wanted.append(Wanted(id: region.backendID ?? "ram\(index)", size: region.size, backend: nil))
                }
            }
        }
        guard !wanted.isEmpty else { throw .anonymousRAM(backend: nil) }
        for item in wanted {
            guard let backend = item.backend else { continue }
            if backend.kind == .ram { throw .anonymousRAM(backend: backend.id) }
            if !backend.shared { throw .privateRAM(backend: backend.id) }
        }

        var candidates = MemoryMapping.coalesced(mappings).filter(\.isSharedFileMapping)
        var plan: [(id: String, mapping: MemoryMapping)] = []
        // Backends that name their file first, so that looser matches cannot take their mapping.
        for item in wanted.sorted(by: { specificity($0.backend) > specificity($1.backend) }) {
            guard let found = candidates.firstIndex(where: { $0.length == UInt64(item.size) && fits($0, item.backend) }) else {
                // Plain `-m` RAM (no backend objects) is anonymous.
                if backends.isEmpty { throw .anonymousRAM(backend: nil) }
                throw .backendNotFound(backend: item.id, size: item.size)
            }
            let mapping = candidates.remove(at: found)
            candidates.removeAll { $0.file == mapping.file }
            plan.append((item.id, mapping))
        }
        let order = Dictionary(uniqueKeysWithValues: wanted.enumerated().map { ($1.id, $0) })
        return plan.sorted { order[$0.id, default: 0] < order[$1.id, default: 0] }
    }

    private static func specificity(_ backend: MemoryBackendObject?) -> Int {
        switch backend?.kind {
        case .file where backend?.memPath != nil: 2
        case .memfd: 1
        default: 0
        }
    }

    private static func fits(_ mapping: MemoryMapping, _ backend: MemoryBackendObject?) -> Bool {
        guard let backend else { return true }
        switch backend.kind {
        case .memfd:
            return mapping.isMemfd
        case .file:
            guard var memPath = backend.memPath, let path = mapping.path else { return true }
            while memPath.count > 1 && memPath.hasSuffix("/") { memPath.removeLast() }
            // mem-path is the file, or a directory where QEMU made (and unlinked) one.
            return path == memPath || path.hasPrefix(memPath + "/")
        default:
            return true
        }
    }
}

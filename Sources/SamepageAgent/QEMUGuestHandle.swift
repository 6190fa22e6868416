import Glibc
import Foundation
import GuestMemory
import LinuxSystem
import QEMUGuests
import SamepageModel

/// A QEMU guest that libvirt does not manage, as samepaged found it: its process (pid and
/// start time, so that a recycled pid is never taken for it), its name and UUID, and the QMP
/// server socket it is paused over.
struct QEMUGuestHandle: Sendable, Equatable {
    var pid: pid_t
    /// Field 22 of `/proc/PID/stat`: with the pid, the process's identity.
    var startTime: UInt64
    /// The uid it runs as: who besides root may own its QMP socket (``TrustedQMP``).
    var uid: uid_t
    var name: String
    var uuid: UUID
    /// Whether ``uuid`` was derived from its name or VMID: the command line has none.
    var uuidDerived: Bool
    var source: GuestSource
    var vmid: Int?
    var commandLine: QEMUGuestCommandLine
    /// The QMP server socket samepaged talks to; nil when it has none it can connect to.
    var qmpSocket: String?
    /// Why it cannot be paused over QMP (no server socket); nil when it can be tried.
    var unreachable: String?
    /// Its RAM regions as QMP's `query-memdev` listed them at attach (id and size); empty
    /// when QMP did not answer: the command line's backends are then the plan.
    var expected: [ExpectedRegion] = []

    /// The guest of a QEMU found in /proc; nil for one with neither a UUID, a VMID nor a name
    /// (nothing a policy could select it by).
    init?(_ found: DiscoveredQEMU) {
        let line = found.commandLine
        guard let key = line.key else { return nil }
        pid = found.pid
        startTime = found.startTime
        uid = found.uid
        commandLine = line
        switch line.source {
        case .proxmox(let id):
            source = .proxmox
            vmid = id
        case .qemu:
            source = .qemu
            vmid = nil
        }
        name = line.name ?? vmid.map { "vm\($0)" } ?? "qemu-\(found.pid)"
        switch key {
        case .uuid(let uuid):
            self.uuid = uuid
            uuidDerived = false
        case .proxmox, .name:
            uuid = Self.derivedUUID(key.description)
            uuidDerived = true
        }
        let servers = line.connectableMonitors
        // Proxmox: qemu-server's own socket, so that its commands queue behind ours.
        qmpSocket = vmid.flatMap { id in servers.first { $0.hasSuffix("/\(id).qmp") } } ?? servers.first
        if qmpSocket == nil {
            let monitors = line.monitors.map(\.description)
            unreachable = monitors.isEmpty
                ? "no QMP monitor on its command line"
                : "no QMP server socket to connect to (\(monitors.joined(separator: ", ")))"
        }
    }

    /// A stable UUID for a guest whose command line has none, from its key (`proxmox:101`,
    /// `name:web`): RFC 9562's version 8 (custom), two FNV-1a 64-bit hashes of the key.
    /// Policies select such a guest by its name; the UUID only keeps it apart from others.
    static func derivedUUID(_ key: String) -> UUID {
        func fnv1a(_ bytes: some Sequence<UInt8>, basis: UInt64) -> UInt64 {
            bytes.reduce(basis) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
        }
        let high = fnv1a(Array("samepage:\(key)".utf8), basis: 0xcbf2_9ce4_8422_2325)
        let low = fnv1a(Array("\(key):samepage".utf8), basis: 0x84222325_cbf29ce4)
        var bytes = (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) }
            + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
        bytes[6] = (bytes[6] & 0x0f) | 0x80  // version 8
        bytes[8] = (bytes[8] & 0x3f) | 0x80  // the RFC's variant
        return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                           bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }

    /// What the pause journal keeps to find this QEMU again after a crash; nil without a
    /// QMP socket (such a guest is never paused).
    var journalTarget: PauseJournal.QMPTarget? {
        qmpSocket.map { PauseJournal.QMPTarget(socket: $0, pid: pid, startTime: startTime) }
    }

    /// The start time of process `pid` (field 22 of its stat), nil when there is no such
    /// process. Throws when its stat cannot be read for another reason (then whether it is
    /// gone is not known).
    static func startTime(of pid: pid_t) throws(SystemError) -> UInt64? {
        let stat: [UInt8]
        do { stat = try readWholeFile("/proc/\(pid)/stat", limit: 4096) } catch {
            if error.errno == .noSuchFileOrDirectory || error.errno == .noSuchProcess { return nil }
            throw error
        }
        return ProcessMappingIndex.startAndSize(stat)?.startTime
    }

    /// Facts the command line tells: the RAM's kind, what pins or reaches it, the vhost-user
    /// sockets. The rest (other mappers, DMA descriptors, jobs) comes from the process and QMP.
    var commandLineFacts: GuestFacts {
        var facts = GuestFacts()
        let backends = commandLine.memoryBackends
        if let first = backends.first {
            switch first.kind {
            case .memfd: facts.backing = "memfd"
            case .file: facts.backing = "file"
            case .ram: facts.backing = "anonymous"
            case .other(let kind): facts.backing = kind
            }
            facts.access = backends.allSatisfy(\.shared) ? "shared" : "private"
        } else if commandLine.memPath != nil {
            facts.backing = "file"
            facts.access = "private"
        }
        facts.hugepages = backends.contains(where: \.hugetlb)
            || backends.contains { $0.memPath?.contains("hugepages") == true } || commandLine.memPath?.contains("hugepages") == true
        facts.preallocated = commandLine.memPrealloc || backends.contains(where: \.prealloc)
        facts.locked = commandLine.memoryLocked
        facts.assignedDevices = commandLine.devices.filter { $0.kind != .ivshmem && $0.kind != .persistentMemory }.map(\.description)
        facts.ivshmem = commandLine.devices.filter { $0.kind == .ivshmem }.map(\.description)
        facts.persistentMemory = commandLine.devices.filter { $0.kind == .persistentMemory }.map(\.description)
        facts.vhostUser = commandLine.vhostUserSockets.sorted()
        facts.qmpUnreachable = unreachable
        facts.balloon = commandLine.balloon.map { Balloon(model: $0.driver, freePageReporting: $0.freePageReporting) }
        return facts
    }
}

import Libvirt
import SamepageCore

/// What the agent does with a guest's memory (a policy file's `mode`).
public enum PolicyMode: String, Sendable, Codable, CaseIterable {
    /// Never read.
    case off
    /// Scanned and accounted; never paused or changed.
    case report
    /// Zero pages found (and, later, reclaimed); no comparison with other pages.
    case zero
    /// Both: zero pages and cross-guest merging, within the guest's trust group.
    case merge

    /// Whether the guest's pages go into the stable and unstable trees.
    public var merges: Bool { self == .report || self == .merge }
    /// Whether the guest's zero pages may be given back (in pauses of the guest).
    public var reclaims: Bool { self == .zero || self == .merge }
}

/// How the agent treats one guest: a per-guest policy file's content.
public struct GuestPolicy: Sendable, Equatable, Codable {
    public var mode: PolicyMode = .off
    /// Guests are compared only with guests of the same group; nil is a group of its own.
    public var trustGroup: String?
    /// Cap on the guest's pages tracked as sharing; 0 = unlimited.
    public var maxPages: Int = 0
    /// Target length of one reclaim pause, in milliseconds.
    public var maxPauseMs: Int = 10
    /// Duty cycle: paused milliseconds allowed per minute.
    public var maxPauseMsPerMinute: Int = 200
    /// Reclaim zero pages of hugetlbfs backends too (a refault against an empty pool kills
    /// QEMU, so this is off unless asked for).
    public var reclaimHugetlbfs = false

    public init(
        mode: PolicyMode = .off, trustGroup: String? = nil, maxPages: Int = 0,
        maxPauseMs: Int = 10, maxPauseMsPerMinute: Int = 200, reclaimHugetlbfs: Bool = false
    ) {
        self.mode = mode
        self.trustGroup = trustGroup
        self.maxPages = maxPages
        self.maxPauseMs = maxPauseMs
        self.maxPauseMsPerMinute = maxPauseMsPerMinute
        self.reclaimHugetlbfs = reclaimHugetlbfs
    }

    public enum CodingKeys: String, CodingKey {
        case mode
        case trustGroup = "trust_group"
        case maxPages = "max_pages"
        case maxPauseMs = "max_pause_ms"
        case maxPauseMsPerMinute = "max_pause_ms_per_minute"
        case reclaimHugetlbfs = "reclaim_hugetlbfs"
    }
}

/// A guest as libvirt names it.
public struct GuestIdentity: Sendable, Hashable, Codable {
    public var name: String
    /// Lower-case, with dashes.
    public var uuid: String

    public init(name: String, uuid: String) {
        self.name = name
        self.uuid = uuid
    }
}

/// One RAM backend region of a guest, as mapped.
public struct RegionStatus: Sendable, Equatable, Codable {
    /// QEMU's memory-backend id (`pc.ram`, `ram-node0`, `memdimm0`).
    public var backend: String
    /// memfd, tmpfs file, hugetlbfs, disk file.
    public var kind: String
    /// The mapping's path in QEMU (`/memfd:...`, a mem-path file).
    public var path: String?
    public var bytes: Int
    public var pages: Int
}

/// A process other than the guest's QEMU that maps one of its RAM backends.
public struct MapperProcess: Sendable, Equatable, Codable {
    public var pid: Int32
    public var command: String
    /// For a vhost-user backend: the socket path it serves the guest on.
    public var socket: String?

    public init(pid: Int32, command: String, socket: String? = nil) {
        self.pid = pid
        self.command = command
        self.socket = socket
    }

    /// `/proc/PID/comm`, or "?".
    static func command(of pid: Int32) -> String {
        (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
    }
}

/// The facts about a guest that decide what may be done with its memory.
public struct GuestFacts: Sendable, Equatable, Codable {
    /// `memoryBacking` source: memfd, file, anonymous.
    public var backing: String = "anonymous"
    /// shared or private.
    public var access: String?
    public var hugepages = false
    public var hugepageSizesKiB: [UInt64] = []
    /// Memory allocated up front (`<allocation mode='immediate'/>`).
    public var preallocated = false
    /// `<locked/>`: pinned memory.
    public var locked = false
    /// Devices that keep writing while the guest is suspended, from the XML: VFIO/hostdev,
    /// vDPA interfaces, NVMe and vhost-vdpa disks, and devices added outside libvirt's model
    /// (`<qemu:commandline>` arguments, `<qemu:override>` of a device).
    public var assignedDevices: [String] = []
    /// ivshmem shared memory devices.
    public var ivshmem: [String] = []
    /// nvdimm and virtio-pmem devices.
    public var persistentMemory: [String] = []
    /// SEV/TDX launch security.
    public var launchSecurity: String?
    /// vhost-user devices (their sockets), virtiofs included.
    public var vhostUser: [String] = []
    /// The guest's vhost-user backends that map its RAM (each connected to its QEMU on one of
    /// the guest's vhost-user sockets): these may map it, reclaim still allowed.
    public var vhostUserBackends: [MapperProcess] = []
    /// Other processes that map a RAM backend: these keep reclaim off.
    public var otherMappers: [MapperProcess] = []
    /// A migration, snapshot or dump is running.
    public var activeJob = false
    /// Devices that DMA into guest RAM, seen from the processes: VFIO, iommufd or vhost-vdpa
    /// descriptors held by QEMU or one of its vhost-user backends (`/dev/vfio/7 (qemu 1234)`).
    public var dmaDescriptors: [String] = []
    /// The XML could not be read again at the last reconcile: what the guest has now is not
    /// known, so nothing is reclaimed until it is.
    public var definitionUnknown = false

    public init() {}

    /// The facts of a new definition, with what was learned from the processes and libvirt's
    /// job state kept from `previous`.
    init(_ definition: DomainDefinition, keepingProcessFactsOf previous: GuestFacts) {
        self.init(definition)
        activeJob = previous.activeJob
        vhostUserBackends = previous.vhostUserBackends
        otherMappers = previous.otherMappers
        dmaDescriptors = previous.dmaDescriptors
    }

    init(_ definition: DomainDefinition) {
        let backing = definition.memoryBacking
        self.backing = backing.source?.rawValue ?? "anonymous"
        access = backing.access?.rawValue
        hugepages = backing.hugepages
        hugepageSizesKiB = backing.hugepageSizes.map(\.sizeKiB)
        preallocated = backing.preallocated
        locked = backing.locked
        assignedDevices = definition.hostDevices.map { "hostdev \($0.type)\($0.alias.map { " \($0)" } ?? "")" }
            + definition.vdpaInterfaces.map { "vdpa \($0.devicePath ?? $0.alias ?? "?")" }
            + definition.nvmeDisks.map { "nvme disk \($0.pciAddress ?? $0.alias ?? "?")" }
            + definition.vdpaDisks.map { "vhost-vdpa disk \($0.devicePath ?? $0.alias ?? "?")" }
            + definition.commandLineDevices.map { "qemu:commandline \($0)" }
            + definition.deviceOverrides.map { "qemu:override of device \($0)" }
        ivshmem = definition.sharedMemoryDevices.map(\.name)
        persistentMemory = definition.memoryDevices
            .filter { $0.model == .nvdimm || $0.model == .virtioPmem }
            .map { "\($0.model.rawValue)\($0.alias.map { " \($0)" } ?? "")" }
        launchSecurity = definition.launchSecurity
        vhostUser = definition.vhostUserDevices.map { "\($0.kind.rawValue) \($0.socketPath ?? $0.alias ?? "?")" }
            + definition.virtiofsFilesystems.map { "virtiofs \($0.socketPath ?? $0.target ?? "?")" }
    }
}

/// One guest in the agent's listing, mapped and scanned or why not; also what the control API
/// shows of a guest (`list`, `dominfo`; its wire form is in SamepageControl).
public struct GuestStatus: Sendable, Equatable {
    public var name: String
    public var uuid: String
    /// libvirt's state: running, paused, ...
    public var state: String
    /// Whether its RAM is mapped and on the engine's scan list.
    public var mapped: Bool
    /// Why it is not mapped (or was dropped); nil when mapped.
    public var reason: String?
    public var mode: PolicyMode
    public var trustGroup: String?
    /// The kinds of its RAM backends, e.g. "memfd".
    public var backend: String?
    public var regions: [RegionStatus]
    public var facts: GuestFacts
    /// The engine's counters summed over the guest's regions.
    public var counters: Counters
    /// Zero-page reclaim: eligibility and what it did.
    public var reclaim = ReclaimStatus()

    public init(
        name: String, uuid: String, state: String, mapped: Bool, reason: String? = nil, mode: PolicyMode,
        trustGroup: String? = nil, backend: String? = nil, counters: Counters = Counters(),
        regions: [RegionStatus] = [], facts: GuestFacts = GuestFacts(), reclaim: ReclaimStatus = ReclaimStatus()
    ) {
        self.name = name
        self.uuid = uuid
        self.state = state
        self.mapped = mapped
        self.reason = reason
        self.mode = mode
        self.trustGroup = trustGroup
        self.backend = backend
        self.regions = regions
        self.facts = facts
        self.counters = counters
        self.reclaim = reclaim
    }
}

/// Everything the agent shows, taken at one moment.
public struct AgentSnapshot: Sendable {
    /// Whether the libvirt connection is up.
    public var connected = false
    /// The last connection error, while disconnected.
    public var connectionError: String?
    /// Pauses of samepaged's (this run's or a journalled earlier one's) not resumed yet.
    public var unresumedPauses = 0
    public var guests: [GuestStatus] = []
    /// The engine's global counters.
    public var counters = Counters()
    public var tunables = Tunables()
    public var run: RunMode = .merge
    /// Bytes of tracking memory the engine holds.
    public var trackingBytes = 0
    /// Pages scanned per second over the last 10 seconds.
    public var scanRate = 0.0
    /// Whether the guest list was read from libvirt at least once.
    public var updatedOnce = false
    /// Reclaim over all guests, those gone included.
    public var reclaim = ReclaimStatus()

    public init() {}
}

/// Stable nodes (merged contents) shared between each pair of guests: `pages[i][j]` counts
/// the nodes with members in both guest i and guest j; the diagonal, a guest's own nodes.
public struct SharingMatrix: Sendable, Equatable, Codable {
    public var guests: [GuestIdentity]
    public var pages: [[Int]]

    public init(guests: [GuestIdentity], pages: [[Int]]) {
        self.guests = guests
        self.pages = pages
    }
}

/// Zero-page reclaim for one guest (or, summed, for the host): whether it may happen, and
/// what it did. Bytes come from the backends' allocated blocks before and after each punch.
public struct ReclaimStatus: Sendable, Equatable, Codable {
    /// Whether this guest's zero pages may be reclaimed now.
    public var eligible = false
    /// Why not, when not eligible.
    public var reason: String?
    /// Zero pages punched out of the backends.
    public var zeroPagesReclaimed = 0
    /// Bytes the backends gave back.
    public var bytesReclaimed = 0
    /// Pauses made for reclaim.
    public var pauses = 0
    /// Their total length, suspend to resume, in milliseconds.
    public var pauseMillisecondsTotal = 0.0
    /// Pauses longer than the policy's `max_pause_ms`; each backs the guest off.
    public var pauseOverruns = 0
    /// Confirmed zero pages waiting for the next pause.
    public var pendingPages = 0
    /// Reclaimed pages the guest touched again (they are resident once more); such pages are
    /// not reclaimed again while the guest runs.
    public var zeroPagesRefaulted = 0
    /// Pages reclaimed and still holes: what the host holds back for this guest now.
    public var pagesHeld = 0
    /// Held pages still to be allocated again after `run unmerge`.
    public var pagesToRepopulate = 0
    /// Pauses whose verify-and-punch stopped before the batch was done: the deadline inside
    /// the pause came, or someone else changed the guest's state (an outside resume).
    public var pausesStoppedEarly = 0
    /// Why the last resume of a pause of ours failed, while it is being retried (with
    /// backoff); nil when every pause of ours has ended.
    public var resumeFailure: String?
    /// Pauses by length: counts for lengths up to each of ``histogramBoundsMs``.
    public var pauseHistogram: [Int] = Array(repeating: 0, count: ReclaimStatus.histogramBoundsMs.count)

    /// Upper bounds of the pause histogram's buckets, in milliseconds (the last is +Inf).
    public static let histogramBoundsMs: [Double] = [1, 2, 5, 10, 20, 50, 100, .infinity]

    public init() {}

    public enum CodingKeys: String, CodingKey {
        case eligible, reason, pauses
        case zeroPagesReclaimed = "zero_pages_reclaimed"
        case bytesReclaimed = "bytes_reclaimed"
        case pauseMillisecondsTotal = "pause_ms_total"
        case pauseOverruns = "pause_overruns"
        case pendingPages = "pending_pages"
        case pauseHistogram = "pause_histogram"
        case zeroPagesRefaulted = "zero_pages_refaulted"
        case pagesHeld = "pages_held"
        case pagesToRepopulate = "pages_to_repopulate"
        case pausesStoppedEarly = "pauses_stopped_early"
        case resumeFailure = "resume_failure"
    }

    /// Missing keys keep their defaults, so a reader copes with a daemon that knows fewer.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        eligible = try c.decodeIfPresent(Bool.self, forKey: .eligible) ?? false
        reason = try c.decodeIfPresent(String.self, forKey: .reason)
        zeroPagesReclaimed = try c.decodeIfPresent(Int.self, forKey: .zeroPagesReclaimed) ?? 0
        bytesReclaimed = try c.decodeIfPresent(Int.self, forKey: .bytesReclaimed) ?? 0
        pauses = try c.decodeIfPresent(Int.self, forKey: .pauses) ?? 0
        pauseMillisecondsTotal = try c.decodeIfPresent(Double.self, forKey: .pauseMillisecondsTotal) ?? 0
        pauseOverruns = try c.decodeIfPresent(Int.self, forKey: .pauseOverruns) ?? 0
        pendingPages = try c.decodeIfPresent(Int.self, forKey: .pendingPages) ?? 0
        zeroPagesRefaulted = try c.decodeIfPresent(Int.self, forKey: .zeroPagesRefaulted) ?? 0
        pagesHeld = try c.decodeIfPresent(Int.self, forKey: .pagesHeld) ?? 0
        pagesToRepopulate = try c.decodeIfPresent(Int.self, forKey: .pagesToRepopulate) ?? 0
        pausesStoppedEarly = try c.decodeIfPresent(Int.self, forKey: .pausesStoppedEarly) ?? 0
        resumeFailure = try c.decodeIfPresent(String.self, forKey: .resumeFailure)
        pauseHistogram = try c.decodeIfPresent([Int].self, forKey: .pauseHistogram)
            ?? Array(repeating: 0, count: ReclaimStatus.histogramBoundsMs.count)
    }

    /// Records one pause.
    mutating func record(pauseMilliseconds: Double, overrun: Bool) {
        pauses += 1
        pauseMillisecondsTotal += pauseMilliseconds
        if overrun { pauseOverruns += 1 }
        let bucket = ReclaimStatus.histogramBoundsMs.firstIndex { pauseMilliseconds <= $0 }!
        pauseHistogram[bucket] += 1
    }

    /// Adds another guest's figures (for the host's totals).
    mutating func add(_ other: ReclaimStatus) {
        zeroPagesReclaimed += other.zeroPagesReclaimed
        bytesReclaimed += other.bytesReclaimed
        pauses += other.pauses
        pauseMillisecondsTotal += other.pauseMillisecondsTotal
        pauseOverruns += other.pauseOverruns
        pendingPages += other.pendingPages
        zeroPagesRefaulted += other.zeroPagesRefaulted
        pagesHeld += other.pagesHeld
        pagesToRepopulate += other.pagesToRepopulate
        pausesStoppedEarly += other.pausesStoppedEarly
        for i in pauseHistogram.indices { pauseHistogram[i] += other.pauseHistogram[i] }
    }
}

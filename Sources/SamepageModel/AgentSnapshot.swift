import SamepageCore

/// Everything the agent shows, taken at one moment: what the control API and the metrics
/// report. Not on the wire as such; `list` sends its guests and `stats` its ``DaemonStats``.
public struct AgentSnapshot: Sendable {
    /// Whether the libvirt connection is up.
    public var connected = false
    /// Whether libvirt is configured at all (`libvirt.uri` not empty): false on a host
    /// without libvirtd (Proxmox VE), where ``connected`` is always false and means nothing.
    public var libvirtConfigured = true
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
    /// The last full scan's wall and CPU time; nil until one completed.
    public var lastFullScan: FullScanTime?
    /// Whether the guest list was read from libvirt at least once.
    public var updatedOnce = false
    /// Reclaim over all guests, those gone included.
    public var reclaim = ReclaimStatus()
    /// The kernel's own KSM: governed or not, its counters.
    public var kernelKSM = KernelKSMStatus()
    /// samepaged's own RSS and CPU, read on the agent's thread; nil until read.
    public var agentCost: AgentCost?
    /// Processes that look like a QEMU but are not trusted as one, by pid.
    public var ignoredProcesses: [IgnoredProcess] = []

    /// Before the agent has published anything: disconnected, no guests.
    public init() {}
}

/// The daemon's global state (`stats`): the agent's snapshot, summed up.
public struct DaemonStats: Sendable, Equatable {
    /// The engine's global counters (the kernel's names on the wire).
    public var counters: Counters
    /// The run mode (`run`: 0, 1, 2 on the wire, as `/sys/kernel/mm/ksm/run`).
    public var run: RunMode
    public var tunables: Tunables
    /// Bytes of tracking memory the engine holds.
    public var trackingBytes: Int
    /// Pages scanned per second over the last 10 seconds.
    public var scanRate: Double
    /// The last full scan's wall and CPU time; nil until one completed.
    public var lastFullScan: FullScanTime?
    /// Whether the libvirt connection is up.
    public var connected: Bool
    /// Whether libvirt is configured at all (`libvirt_configured`, left out while it is).
    public var libvirtConfigured = true
    /// The last connection error, while disconnected.
    public var connectionError: String?
    /// Guests known, and how many of them are mapped.
    public var guests: Int
    public var guestsMapped: Int
    /// The RAM of the mapped guests, in bytes (their regions): what the savings are a share of.
    public var guestRAMBytes = 0
    /// Reclaim over all guests.
    public var reclaim: ReclaimStatus
    /// The kernel's own KSM (`kernel_ksm`).
    public var kernelKSM = KernelKSMStatus()
    /// Processes that look like a QEMU but are not trusted as one (`ignored_processes`, left
    /// out when there are none).
    public var ignoredProcesses: [IgnoredProcess] = []

    /// The host's savings in bytes: the sum over the guests present, and samepaged's cost
    /// (see ``Savings``).
    public var savings = Savings()

    public init(
        counters: Counters = Counters(), run: RunMode = .merge, tunables: Tunables = Tunables(),
        trackingBytes: Int = 0, scanRate: Double = 0, lastFullScan: FullScanTime? = nil, connected: Bool = false,
        connectionError: String? = nil, guests: Int = 0, guestsMapped: Int = 0, reclaim: ReclaimStatus = ReclaimStatus()
    ) {
        self.scanRate = scanRate
        self.lastFullScan = lastFullScan
        self.counters = counters
        self.run = run
        self.tunables = tunables
        self.trackingBytes = trackingBytes
        self.connected = connected
        self.connectionError = connectionError
        self.guests = guests
        self.guestsMapped = guestsMapped
        self.reclaim = reclaim
    }

    /// The agent's snapshot, summed up.
    public init(_ snapshot: AgentSnapshot) {
        self.init(
            counters: snapshot.counters, run: snapshot.run, tunables: snapshot.tunables,
            trackingBytes: snapshot.trackingBytes, scanRate: snapshot.scanRate, lastFullScan: snapshot.lastFullScan,
            connected: snapshot.connected,
            connectionError: snapshot.connectionError, guests: snapshot.guests.count,
            guestsMapped: snapshot.guests.count(where: \.mapped), reclaim: snapshot.reclaim)
        guestRAMBytes = snapshot.guests.reduce(0) { $0 + $1.regions.reduce(0) { $0 + $1.bytes } }
        kernelKSM = snapshot.kernelKSM
        savings = Savings.host(snapshot.guests, agent: snapshot.agentCost)
        ignoredProcesses = snapshot.ignoredProcesses
        libvirtConfigured = snapshot.libvirtConfigured
    }
}

/// The stats' wire form: one flat object of the kernel-named counters, `run` and `run_mode`,
/// the tunables under their kernel names, reclaim's totals, the daemon's own keys, and
/// `reclaim` and `savings` nested. The counters, run mode, tunables, `tracking_bytes` and `connected` are
/// required; the rest may be missing. The last full scan is `full_scan_seconds` and
/// `full_scan_cpu_percent`, both null until a full scan completed.
extension DaemonStats: Codable {
    public enum CodingKeys: String, CodingKey {
        case connected, guests, reclaim
        case trackingBytes = "tracking_bytes"
        case scanRate = "pages_scanned_per_second"
        case connectionError = "connection_error"
        case guestsMapped = "guests_mapped"
        case guestRAMBytes = "guest_ram_bytes"
        case kernelKSM = "kernel_ksm"
        case savings
        case fullScanSeconds = "full_scan_seconds"
        case fullScanCPUPercent = "full_scan_cpu_percent"
        case ignoredProcesses = "ignored_processes"
        case libvirtConfigured = "libvirt_configured"
    }

    public func encode(to encoder: any Encoder) throws {
        try counters.encode(to: encoder)
        try run.encode(to: encoder)
        try tunables.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(trackingBytes, forKey: .trackingBytes)
        try c.encode(scanRate, forKey: .scanRate)
        try c.encode(lastFullScan?.seconds, forKey: .fullScanSeconds)
        try c.encode(lastFullScan?.cpuPercent, forKey: .fullScanCPUPercent)
        try c.encode(connected, forKey: .connected)
        try c.encode(connectionError, forKey: .connectionError)
        try c.encode(guests, forKey: .guests)
        try c.encode(guestsMapped, forKey: .guestsMapped)
        try c.encode(guestRAMBytes, forKey: .guestRAMBytes)
        try c.encode(kernelKSM, forKey: .kernelKSM)
        try c.encode(savings, forKey: .savings)
        if !ignoredProcesses.isEmpty { try c.encode(ignoredProcesses, forKey: .ignoredProcesses) }
        if !libvirtConfigured { try c.encode(false, forKey: .libvirtConfigured) }
        try reclaim.encodeTotals(to: encoder)
        try c.encode(reclaim, forKey: .reclaim)
    }

    public init(from decoder: any Decoder) throws {
        let counters = try Counters(from: decoder)
        let run = try RunMode(from: decoder)
        let tunables = try Tunables(from: decoder)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(counters: counters, run: run, tunables: tunables)
        trackingBytes = try c.decode(Int.self, forKey: .trackingBytes)
        scanRate = try c.decode(.scanRate, or: scanRate)
        if let seconds = try c.decodeIfPresent(Double.self, forKey: .fullScanSeconds) {
            let cpuPercent = try c.decode(.fullScanCPUPercent, or: 0.0)
            lastFullScan = FullScanTime(seconds: seconds, cpuPercent: cpuPercent)
        }
        connected = try c.decode(Bool.self, forKey: .connected)
        connectionError = try c.decodeIfPresent(String.self, forKey: .connectionError)
        guests = try c.decode(.guests, or: guests)
        guestsMapped = try c.decode(.guestsMapped, or: guestsMapped)
        guestRAMBytes = try c.decode(.guestRAMBytes, or: guestRAMBytes)
        kernelKSM = try c.decode(.kernelKSM, or: kernelKSM)
        savings = try c.decode(.savings, or: savings)
        reclaim = try c.decode(.reclaim, or: reclaim)
        ignoredProcesses = try c.decode(.ignoredProcesses, or: ignoredProcesses)
        libvirtConfigured = try c.decode(.libvirtConfigured, or: libvirtConfigured)
    }
}

import Prometheus
import SamepageCore
import SamepageModel
import Synchronization

/// The agent's state as Prometheus metrics.
///
/// Counters and gauges are taken from the agent's snapshot at each scrape, so they agree with
/// `samepage stats` and `samepage list` by construction: the global series carry the kernel's
/// counter names under `samepage_`, the per-guest ones under `samepage_guest_` with the labels
/// `guest`, `uuid` and `trust_group`; `pages_to_scan`, `advisor_mode` (0 none, 1 scan-time),
/// the advisor's target and the last full scan's time and CPU are global gauges (the last
/// two once a full scan completed). The pause histogram cannot be rebuilt from a snapshot
/// (it needs each pause's length), so it is fed as pauses happen through ``record(_:)``, the
/// agent's pause observer (`AgentConfiguration.pauseObserver`); its buckets are those of the snapshot's
/// `pause_histogram`, in seconds.
///
/// Series of a guest that left the snapshot are removed at the next scrape. The text itself is
/// written by swift-prometheus.
public final class MetricsExporter: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let state = Mutex(State())
    private let pauseSeconds: ValueHistogram
    private let guestSeenPauseSeconds: ValueHistogram

    private struct State: ~Copyable {
        /// Per guest (by UUID): its labels and every series registered under them.
        var guests: [String: GuestSeries] = [:]
    }

    private struct GuestSeries {
        var labels: [(String, String)]
        var counters: [ObjectIdentifier: Counter] = [:]
        var gauges: [ObjectIdentifier: Gauge] = [:]
        var histogram: ValueHistogram?
        var guestSeenHistogram: ValueHistogram?
    }

    /// The pause histogram's bucket bounds in seconds: the snapshot's millisecond bounds,
    /// converted the same way each pause's length is, so both put a pause in the same bucket.
    public static let pauseBucketsSeconds: [Double] =
        ReclaimStatus.histogramBoundsMs.filter(\.isFinite).map { $0 / 1000 }

    public init(version: String) {
        registry.makeGauge(descriptor: Name.buildInfo, labels: [("version", version)]).set(1.0)
        pauseSeconds = registry.makeValueHistogram(descriptor: Name.pauseSeconds, buckets: Self.pauseBucketsSeconds)
        guestSeenPauseSeconds = registry.makeValueHistogram(descriptor: Name.guestSeenPauseSeconds, buckets: Self.pauseBucketsSeconds)
    }

    /// Records one reclaim pause, globally and for its guest: its length from the calls, and
    /// what the guest saw when that is known.
    public func record(_ pause: ReclaimPause) {
        let seconds = pause.milliseconds / 1000
        pauseSeconds.record(seconds)
        let guestSeenSeconds = pause.guestSeenMilliseconds.map { $0 / 1000 }
        if let guestSeenSeconds { guestSeenPauseSeconds.record(guestSeenSeconds) }
        let labels = Self.labels(pause.guest, trustGroup: pause.trustGroup)
        let guestSeries = state.withLock { state in
            series(for: pause.guest.uuid, labels: labels, in: &state)
        }
        guestSeries.histogram?.record(seconds)
        if let guestSeenSeconds { guestSeries.guestSeenHistogram?.record(guestSeenSeconds) }
    }

    /// The metrics text (Prometheus exposition format 0.0.4) for this snapshot.
    /// - Parameters:
    ///   - residentBytes: the daemon's resident memory, when known.
    ///   - cpuSeconds: the daemon's user and system CPU time since it started, all threads,
    ///     when known (``processCPUSeconds()``).
    public func render(_ snapshot: AgentSnapshot, residentBytes: Int? = nil, cpuSeconds: Double? = nil) -> [UInt8] {
        state.withLock { state in
            var global: GuestSeries? = nil
            set(Name.engine, snapshot.counters, labels: [], series: &global)
            set(Name.reclaim, snapshot.reclaim, labels: [], series: &global)
            set(gauge: Name.trackingBytes, Double(snapshot.trackingBytes), labels: [], series: &global)
            set(gauge: Name.scanRate, snapshot.scanRate, labels: [], series: &global)
            set(gauge: Name.guests, Double(snapshot.guests.count), labels: [], series: &global)
            set(gauge: Name.guestsMapped, Double(snapshot.guests.count(where: \.mapped)), labels: [], series: &global)
            set(gauge: Name.connected, snapshot.connected ? 1 : 0, labels: [], series: &global)
            set(gauge: Name.runMode, Double(snapshot.run.rawValue), labels: [], series: &global)
            set(gauge: Name.pagesToScan, Double(snapshot.tunables.pagesToScan), labels: [], series: &global)
            set(gauge: Name.advisorMode, Double(snapshot.tunables.advisorMode.number), labels: [], series: &global)
            set(gauge: Name.advisorTarget, Double(snapshot.tunables.advisorTargetScanTime), labels: [], series: &global)
            if let scan = snapshot.lastFullScan {
                set(gauge: Name.lastFullScanSeconds, scan.seconds, labels: [], series: &global)
                set(gauge: Name.lastFullScanCPU, scan.cpuPercent / 100, labels: [], series: &global)
            }
            set(gauge: Name.unresumedPauses, Double(snapshot.unresumedPauses), labels: [], series: &global)
            if let residentBytes { set(gauge: Name.residentBytes, Double(residentBytes), labels: [], series: &global) }
            for reason in ReclaimDeferral.Reason.allCases {
                let waiting = snapshot.guests.count { $0.reclaim.deferred?.reason == reason }
                set(gauge: Name.deferredGuests, Double(waiting), labels: [("reason", reason.rawValue)], series: &global)
            }
            if let cpuSeconds { set(counter: Name.cpuSeconds, cpuSeconds, labels: [], series: &global) }
            // The kernel's own KSM, beside Samepage's counters: never blurred with them.
            let kernel = snapshot.kernelKSM
            set(gauge: Name.kernelGoverned, kernel.governed ? 1 : 0, labels: [], series: &global)
            for (name, value) in [(Name.kernelRun, kernel.run), (Name.kernelPagesSharing, kernel.pagesSharing),
                                  (Name.kernelPagesShared, kernel.pagesShared), (Name.kernelZeroPages, kernel.ksmZeroPages),
                                  (Name.kernelGeneralProfit, kernel.generalProfit)] {
                if let value { set(gauge: name, Double(value), labels: [], series: &global) }
            }

            var present = Set<String>()
            for guest in snapshot.guests {
                present.insert(guest.uuid)
                let labels = Self.labels(guest.identity, trustGroup: guest.trustGroup)
                var guestSeries: GuestSeries? = series(for: guest.uuid, labels: labels, in: &state)
                set(Name.guestEngine, guest.counters, labels: labels, series: &guestSeries)
                set(Name.guestReclaim, guest.reclaim, labels: labels, series: &guestSeries)
                set(gauge: Name.guestMapped, guest.mapped ? 1 : 0, labels: labels, series: &guestSeries)
                set(gauge: Name.guestReclaimEligible, guest.reclaim.eligible ? 1 : 0, labels: labels, series: &guestSeries)
                set(gauge: Name.guestResumeFailing, guest.reclaim.resumeFailure == nil ? 0 : 1, labels: labels, series: &guestSeries)
                set(gauge: Name.guestReclaimDeferred, guest.reclaim.deferred == nil ? 0 : 1, labels: labels, series: &guestSeries)
                if let kernel = guest.kernelKSM {
                    if let mergeable = kernel.mergeable { set(gauge: Name.guestKernelMergeable, mergeable ? 1 : 0, labels: labels, series: &guestSeries) }
                    for (name, value) in [(Name.guestKernelMergingPages, kernel.mergingPages), (Name.guestKernelZeroPages, kernel.zeroPages),
                                          (Name.guestKernelProfit, kernel.processProfit)] {
                        if let value { set(gauge: name, Double(value), labels: labels, series: &guestSeries) }
                    }
                }
                state.guests[guest.uuid] = guestSeries
            }
            for (uuid, series) in state.guests where !present.contains(uuid) {
                unregister(series)
                state.guests[uuid] = nil
            }
            return registry.emitToBuffer()
        }
    }

    // MARK: Series

    private static func labels(_ guest: GuestIdentity, trustGroup: String?) -> [(String, String)] {
        [("guest", guest.name), ("uuid", guest.uuid), ("trust_group", trustGroup ?? "")]
    }

    /// The guest's series; if its labels changed (a new name or trust group), the old series
    /// go and new ones start.
    private func series(for uuid: String, labels: [(String, String)], in state: inout State) -> GuestSeries {
        if let existing = state.guests[uuid] {
            if existing.labels.elementsEqual(labels, by: { $0.0 == $1.0 && $0.1 == $1.1 }) { return existing }
            unregister(existing)
        }
        var series = GuestSeries(labels: labels)
        series.histogram = registry.makeValueHistogram(
            descriptor: Name.guestPauseSeconds, labels: labels, buckets: Self.pauseBucketsSeconds)
        series.guestSeenHistogram = registry.makeValueHistogram(
            descriptor: Name.guestGuestSeenPauseSeconds, labels: labels, buckets: Self.pauseBucketsSeconds)
        state.guests[uuid] = series
        return series
    }

    private func unregister(_ series: GuestSeries) {
        for counter in series.counters.values { registry.unregisterCounter(counter) }
        for gauge in series.gauges.values { registry.unregisterGauge(gauge) }
        if let histogram = series.histogram { registry.unregisterValueHistogram(histogram) }
        if let histogram = series.guestSeenHistogram { registry.unregisterValueHistogram(histogram) }
    }

    /// Sets a counter to an absolute value: the agent keeps the totals. (A total that went
    /// down, because a guest's slots started over, reads as a counter reset, which Prometheus
    /// handles.) The global series (no guest series to keep them in) are never removed.
    private func set(counter name: MetricNameDescriptor, _ value: Int, labels: [(String, String)], series: inout GuestSeries?) {
        zeroed(counter: name, labels: labels, series: &series).increment(by: Int64(max(0, value)))
    }

    /// The same for a total in seconds (written with a fraction: `12.5`).
    private func set(counter name: MetricNameDescriptor, _ value: Double, labels: [(String, String)], series: inout GuestSeries?) {
        zeroed(counter: name, labels: labels, series: &series).increment(by: max(0, value))
    }

    private func zeroed(counter name: MetricNameDescriptor, labels: [(String, String)], series: inout GuestSeries?) -> Counter {
        let counter = labels.isEmpty ? registry.makeCounter(descriptor: name) : registry.makeCounter(descriptor: name, labels: labels)
        series?.counters[ObjectIdentifier(counter)] = counter
        counter.reset()
        return counter
    }

    private func set(gauge name: MetricNameDescriptor, _ value: Double, labels: [(String, String)], series: inout GuestSeries?) {
        let gauge = labels.isEmpty ? registry.makeGauge(descriptor: name) : registry.makeGauge(descriptor: name, labels: labels)
        series?.gauges[ObjectIdentifier(gauge)] = gauge
        gauge.set(value)
    }

    private func set(_ names: EngineNames, _ c: Counters, labels: [(String, String)], series: inout GuestSeries?) {
        for (key, name) in names.descriptors {
            if key.isCumulative {
                set(counter: name, c[key], labels: labels, series: &series)
            } else {
                set(gauge: name, Double(c[key]), labels: labels, series: &series)
            }
        }
    }

    private func set(_ names: ReclaimNames, _ r: ReclaimStatus, labels: [(String, String)], series: inout GuestSeries?) {
        set(counter: names.zeroPagesReclaimed, r.zeroPagesReclaimed, labels: labels, series: &series)
        set(counter: names.bytesReclaimed, r.bytesReclaimed, labels: labels, series: &series)
        set(counter: names.pauses, r.pauses, labels: labels, series: &series)
        set(counter: names.pauseOverruns, r.pauseOverruns, labels: labels, series: &series)
        set(counter: names.zeroPagesRefaulted, r.zeroPagesRefaulted, labels: labels, series: &series)
        set(gauge: names.pendingPages, Double(r.pendingPages), labels: labels, series: &series)
        set(gauge: names.heldPages, Double(r.pagesHeld), labels: labels, series: &series)
        set(counter: names.pausesStoppedEarly, r.pausesStoppedEarly, labels: labels, series: &series)
        set(counter: names.guestSeenOverruns, r.guestSeenOverruns, labels: labels, series: &series)
        for reason in ReclaimDeferral.Reason.allCases {
            set(counter: names.deferrals, r.deferrals(reason), labels: labels + [("reason", reason.rawValue)], series: &series)
        }
    }
}

// MARK: - Names

/// The engine's counters under their kernel names (`/sys/kernel/mm/ksm/*`, the names of
/// ``Counters/CodingKeys``): a gauge for pages in some state now, a counter (`_total`) for
/// what only grows.
struct EngineNames {
    let descriptors: [(Counters.CodingKeys, MetricNameDescriptor)]

    init(subsystem: String?, of whom: String) {
        descriptors = Counters.CodingKeys.allCases.map { key in
            (key, Name.d(subsystem, key.rawValue, key.isCumulative ? "total" : "", Self.help(key) + " (\(whom))"))
        }
    }

    static func help(_ key: Counters.CodingKeys) -> String {
        switch key {
        case .pagesShared: "Distinct merged contents: stable-tree nodes, as KSM's pages_shared"
        case .pagesSharing: "Pages merged into a stable node beyond its first, as KSM's pages_sharing"
        case .pagesUnshared: "Pages in the unstable tree, unchanged and unique, as KSM's pages_unshared"
        case .pagesVolatile: "Tracked pages changing too fast to merge, as KSM's pages_volatile"
        case .zeroPages: "Pages found all zero on two visits in a row"
        case .fullScans: "Completed passes over the guest pages, as KSM's full_scans"
        case .pagesScanned: "Pages read and classified"
        case .pagesSkipped: "Pages passed over by smart scan"
        case .mergesRefused: "Merges refused by max_kernel_pages or a guest's max_pages"
        }
    }
}

extension Counters.CodingKeys {
    /// Whether the counter only grows (a Prometheus counter) rather than telling how many
    /// pages are in some state now (a gauge).
    var isCumulative: Bool {
        switch self {
        case .fullScans, .pagesScanned, .pagesSkipped, .mergesRefused: true
        case .pagesShared, .pagesSharing, .pagesUnshared, .pagesVolatile, .zeroPages: false
        }
    }
}

/// Reclaim's counters.
struct ReclaimNames {
    let zeroPagesReclaimed, bytesReclaimed, pauses, pauseOverruns, zeroPagesRefaulted: MetricNameDescriptor
    let pendingPages, heldPages, pausesStoppedEarly, guestSeenOverruns, deferrals: MetricNameDescriptor

    init(subsystem: String?, of whom: String) {
        let d = { Name.d(subsystem, $0, $1, $2 + " (\(whom))") }
        zeroPagesReclaimed = d("zero_pages_reclaimed", "total", "Zero pages punched out of guest RAM backends")
        bytesReclaimed = d("reclaimed_bytes", "total", "Bytes the backends gave back, from their allocated blocks")
        pauses = d("reclaim_pauses", "total", "Guest pauses made for reclaim")
        pauseOverruns = d("reclaim_pause_overruns", "total", "Pauses longer than the policy's max_pause_ms")
        zeroPagesRefaulted = d("zero_pages_refaulted", "total", "Reclaimed pages the guest touched again")
        pendingPages = d("reclaim_pending_pages", "", "Confirmed zero pages waiting for a pause")
        heldPages = d("reclaim_held_pages", "", "Pages reclaimed and still holes: memory the host holds back")
        pausesStoppedEarly = d("reclaim_pauses_stopped_early", "total", "Pauses whose punching stopped at the deadline or on an outside state change")
        guestSeenOverruns = d("reclaim_guest_seen_overruns", "total", "Pauses the guest saw (QEMU STOP to RESUME) longer than the policy's max_pause_ms")
        deferrals = d("reclaim_deferrals", "total", "Times a due reclaim began to wait, by reason (cpu_pressure, pause_cost)")
    }
}

/// Descriptors are built on use: swift-prometheus's `MetricNameDescriptor` is not Sendable.
enum Name {
    static var engine: EngineNames { EngineNames(subsystem: nil, of: "all guests") }
    static var guestEngine: EngineNames { EngineNames(subsystem: "guest", of: "per guest") }
    static var reclaim: ReclaimNames { ReclaimNames(subsystem: nil, of: "all guests, those gone included") }
    static var guestReclaim: ReclaimNames { ReclaimNames(subsystem: "guest", of: "per guest") }

    static func d(_ subsystem: String?, _ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "samepage", subsystem: subsystem, metricName: name, unitName: unit, helpText: help)
    }

    static var pauseSeconds: MetricNameDescriptor { d(nil, "reclaim_pause", "seconds", "Length of reclaim pauses, suspend call to resumed (all guests)") }
    static var guestPauseSeconds: MetricNameDescriptor { d("guest", "reclaim_pause", "seconds", "Length of reclaim pauses, suspend call to resumed (per guest)") }
    static var kernelGoverned: MetricNameDescriptor { d("kernel_ksm", "governed", "", "1 while samepaged governs the kernel's ksmd ([kernel_ksm] enabled)") }
    static var kernelRun: MetricNameDescriptor { d("kernel_ksm", "run", "", "The kernel's /sys/kernel/mm/ksm/run: 0 stopped, 1 running, 2 unmerging") }
    static var kernelPagesSharing: MetricNameDescriptor { d("kernel_ksm", "pages_sharing", "", "The kernel's pages_sharing: pages merged for real beyond the first of each KSM page") }
    static var kernelPagesShared: MetricNameDescriptor { d("kernel_ksm", "pages_shared", "", "The kernel's pages_shared: KSM pages in use") }
    static var kernelZeroPages: MetricNameDescriptor { d("kernel_ksm", "zero_pages", "", "The kernel's ksm_zero_pages: pages merged with the zero page (use_zero_pages)") }
    static var kernelGeneralProfit: MetricNameDescriptor { d("kernel_ksm", "general_profit", "bytes", "The kernel's general_profit: bytes KSM saves, less its own tracking") }
    static var guestKernelMergeable: MetricNameDescriptor { d("guest", "kernel_mergeable", "", "1 while samepaged lets the kernel merge the guest (its backends' merge property)") }
    static var guestKernelMergingPages: MetricNameDescriptor { d("guest", "kernel_merging_pages", "", "The guest's QEMU pages merged by the kernel (ksm_stat ksm_merging_pages)") }
    static var guestKernelZeroPages: MetricNameDescriptor { d("guest", "kernel_zero_pages", "", "The guest's QEMU pages merged with the zero page by the kernel (ksm_stat ksm_zero_pages)") }
    static var guestKernelProfit: MetricNameDescriptor { d("guest", "kernel_profit", "bytes", "Bytes the kernel saves on the guest's QEMU, less its tracking (ksm_stat ksm_process_profit)") }
    static var guestSeenPauseSeconds: MetricNameDescriptor { d(nil, "reclaim_guest_seen_pause", "seconds", "Length of reclaim pauses as the guest saw them, QEMU STOP to RESUME (all guests)") }
    static var guestGuestSeenPauseSeconds: MetricNameDescriptor { d("guest", "reclaim_guest_seen_pause", "seconds", "Length of reclaim pauses as the guest saw them, QEMU STOP to RESUME (per guest)") }
    static var deferredGuests: MetricNameDescriptor { d(nil, "reclaim_deferred_guests", "", "Guests whose due reclaim waits now, by reason (cpu_pressure, pause_cost)") }
    static var guestReclaimDeferred: MetricNameDescriptor { d("guest", "reclaim_deferred", "", "1 while the guest's due reclaim waits for the host to calm or its pause cost to fall") }
    static var trackingBytes: MetricNameDescriptor { d(nil, "tracking", "bytes", "Memory the engine holds to track guest pages (rmap items and trees)") }
    static var residentBytes: MetricNameDescriptor { d("process", "resident_memory", "bytes", "samepaged's resident memory") }
    static var cpuSeconds: MetricNameDescriptor { d("process", "cpu_seconds", "total", "samepaged's user and system CPU time, all threads") }
    static var scanRate: MetricNameDescriptor { d(nil, "scan_rate", "pages_per_second", "Pages scanned per second over the last 10 seconds") }
    static var guests: MetricNameDescriptor { d(nil, "guests", "", "Guests known on the libvirt connection") }
    static var guestsMapped: MetricNameDescriptor { d(nil, "guests_mapped", "", "Guests whose RAM backends are mapped and scanned") }
    static var connected: MetricNameDescriptor { d(nil, "libvirt_connected", "", "1 while the libvirt connection is up") }
    static var runMode: MetricNameDescriptor { d(nil, "run", "", "The run mode: 0 stop, 1 merge, 2 unmerge, as /sys/kernel/mm/ksm/run") }
    static var pagesToScan: MetricNameDescriptor { d(nil, "pages_to_scan", "", "Pages visited per batch (pages_to_scan); the scan-time advisor's while it is on") }
    static var advisorMode: MetricNameDescriptor { d(nil, "advisor_mode", "", "Who sets pages_to_scan: 0 none (by hand), 1 scan-time (the advisor), as advisor_mode") }
    static var advisorTarget: MetricNameDescriptor { d(nil, "advisor_target_scan_time", "seconds", "The scan-time advisor's target for one full scan (advisor_target_scan_time)") }
    static var lastFullScanSeconds: MetricNameDescriptor { d(nil, "last_full_scan", "seconds", "Wall time of the last full scan, time with nothing to scan left out") }
    static var lastFullScanCPU: MetricNameDescriptor { d(nil, "last_full_scan_cpu", "ratio", "The agent thread's CPU over the last full scan, in cores") }
    static var buildInfo: MetricNameDescriptor { d(nil, "build", "info", "samepaged's version") }
    static var guestMapped: MetricNameDescriptor { d("guest", "mapped", "", "1 while the guest's RAM backends are mapped and scanned") }
    static var guestReclaimEligible: MetricNameDescriptor { d("guest", "reclaim_eligible", "", "1 while the guest's zero pages may be reclaimed") }
    static var guestResumeFailing: MetricNameDescriptor { d("guest", "resume_failing", "", "1 while a pause of samepaged's could not be ended and its resume is retried") }
    static var unresumedPauses: MetricNameDescriptor { d(nil, "unresumed_pauses", "", "Pauses of samepaged's (this run's or an earlier one's) whose resume has not succeeded yet") }
}

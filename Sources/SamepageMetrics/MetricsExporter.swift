import Prometheus
import SamepageCore
import SamepageModel
import Synchronization

/// The agent's state as Prometheus metrics, by the conventions of node_exporter and the
/// Prometheus naming guide.
///
/// - Quantities of memory are in bytes (`samepage_sharing_bytes`, not pages); what only grows
///   is a `_total` counter; an enum is one series per state, 1 for the state in force
///   (`samepage_run_state{state="merge"} 1`).
/// - Per-guest series (`samepage_guest_*`) carry one label, the guest's `uuid`, which never
///   changes; what describes the guest (name, mode, trust group, source, VMID) is in
///   `samepage_guest_info`, and its RAM in `samepage_guest_ram_bytes`, to be joined
///   (`* on(uuid) group_left(name) samepage_guest_info`). A policy change moves no series.
/// - samepaged's own cost is in the standard `process_*` series (``ProcessMetrics``).
///
/// Values are taken from the agent's snapshot at each scrape, so they agree with
/// `samepage stats` and `samepage list` by construction. The pause histograms cannot be
/// rebuilt from a snapshot (they need each pause's length), so they are fed as pauses happen
/// through ``record(_:)``, the agent's pause observer; their buckets are the snapshot's
/// `pause_histogram`'s, in seconds. A guest's histograms go at the first scrape after it left
/// the snapshot.
///
/// With `perGuest` false (`metrics.per_guest = false`), no per-guest series is written at all:
/// an endpoint that tenants can reach then tells nothing of one guest (sharing figures are a
/// side channel).
public final class MetricsExporter: Sendable {
    /// The histograms, which live across scrapes; every other series is written anew at each.
    private let registry = PrometheusCollectorRegistry()
    private let guestHistograms = Mutex<[String: GuestHistograms]>([:])
    private let pauseSeconds: ValueHistogram
    private let guestSeenPauseSeconds: ValueHistogram
    private let version: String

    /// Whether per-guest series are written.
    public let perGuest: Bool

    private struct GuestHistograms {
        var pause: ValueHistogram
        var guestSeen: ValueHistogram
    }

    /// The pause histogram's bucket bounds in seconds: the snapshot's millisecond bounds,
    /// converted the same way each pause's length is, so both put a pause in the same bucket.
    public static let pauseBucketsSeconds: [Double] =
        ReclaimStatus.histogramBoundsMs.filter(\.isFinite).map { $0 / 1000 }

    /// An exporter for samepaged `version`, with or without per-guest series.
    public init(version: String, perGuest: Bool = true) {
        self.version = version
        self.perGuest = perGuest
        pauseSeconds = registry.makeValueHistogram(
            name: Families.pauseSeconds.name, labels: [], buckets: Self.pauseBucketsSeconds, help: Families.pauseSeconds.help)
        guestSeenPauseSeconds = registry.makeValueHistogram(
            name: Families.guestSeenPauseSeconds.name, labels: [], buckets: Self.pauseBucketsSeconds,
            help: Families.guestSeenPauseSeconds.help)
    }

    /// Records one reclaim pause, globally and (with per-guest series) for its guest: its
    /// length from the calls, and what the guest saw when that is known.
    public func record(_ pause: ReclaimPause) {
        let seconds = pause.milliseconds / 1000
        let guestSeenSeconds = pause.guestSeenMilliseconds.map { $0 / 1000 }
        pauseSeconds.record(seconds)
        if let guestSeenSeconds { guestSeenPauseSeconds.record(guestSeenSeconds) }
        guard perGuest else { return }
        let histograms = guestHistograms.withLock { all -> GuestHistograms in self.histograms(for: pause.guest.uuid, in: &all) }
        histograms.pause.record(seconds)
        if let guestSeenSeconds { histograms.guestSeen.record(guestSeenSeconds) }
    }

    /// The metrics text (Prometheus exposition format 0.0.4) for this snapshot, with the
    /// daemon's `process` figures when given.
    public func render(_ snapshot: AgentSnapshot, process: ProcessMetrics? = nil) -> [UInt8] {
        let registry = PrometheusCollectorRegistry()
        var out = Writer(registry: registry)
        out.gauge(Families.buildInfo, 1, [("version", version)])
        writeDaemon(snapshot, &out)
        writeKernelKSM(snapshot.kernelKSM, &out)
        if let process { writeProcess(process, &out) }
        for key in Counters.CodingKeys.allCases {
            out.engine(key, snapshot.counters, [])
        }
        writeReclaim(snapshot.reclaim, prefix: nil, [], &out)
        writeSavings(Savings.host(snapshot.guests, agent: nil), perGuest: false, [], &out)
        for reason in ReclaimDeferral.Reason.allCases {
            let waiting = snapshot.guests.count { $0.reclaim.deferred?.reason == reason }
            out.gauge(Families.deferredGuests, Double(waiting), [("reason", reason.rawValue)])
        }
        if perGuest {
            for guest in snapshot.guests { writeGuest(guest, &out) }
        }
        // The histograms of guests gone (or all of them, without per-guest series) go now.
        let present = perGuest ? Set(snapshot.guests.map(\.uuid)) : []
        guestHistograms.withLock { all in
            for guest in snapshot.guests where present.contains(guest.uuid) { _ = histograms(for: guest.uuid, in: &all) }
            for (uuid, gone) in all where !present.contains(uuid) {
                self.registry.unregisterValueHistogram(gone.pause)
                self.registry.unregisterValueHistogram(gone.guestSeen)
                all[uuid] = nil
            }
        }
        var bytes = registry.emitToBuffer()
        self.registry.emit(into: &bytes)
        return bytes
    }

    // MARK: Groups of series

    private func writeDaemon(_ snapshot: AgentSnapshot, _ out: inout Writer) {
        out.gauge(Families.tracking, Double(snapshot.trackingBytes))
        out.gauge(Families.guests, Double(snapshot.guests.count))
        out.gauge(Families.guestsMapped, Double(snapshot.guests.count(where: \.mapped)))
        out.gauge(Families.mappedRAM, Double(snapshot.guests.filter(\.mapped).reduce(0) { $0 + Self.ramBytes($1) }))
        out.gauge(Families.connected, snapshot.connected ? 1 : 0)
        out.gauge(Families.libvirtConfigured, snapshot.libvirtConfigured ? 1 : 0)
        for mode in RunMode.allCases {
            out.gauge(Families.runState, snapshot.run == mode ? 1 : 0, [("state", mode.name)])
        }
        out.gauge(Families.pagesToScan, Double(snapshot.tunables.pagesToScan))
        for mode in AdvisorMode.allCases {
            out.gauge(Families.advisorState, snapshot.tunables.advisorMode == mode ? 1 : 0, [("state", mode.name)])
        }
        out.gauge(Families.advisorTarget, Double(snapshot.tunables.advisorTargetScanTime))
        if let scan = snapshot.lastFullScan {
            out.gauge(Families.lastFullScan, scan.seconds)
            out.gauge(Families.lastFullScanCPU, scan.cpuPercent / 100)
        }
        out.gauge(Families.unresumed, Double(snapshot.unresumedPauses))
    }

    /// The kernel's own KSM, beside Samepage's figures: never blurred with them.
    private func writeKernelKSM(_ kernel: KernelKSMStatus, _ out: inout Writer) {
        out.gauge(Families.kernelGoverned, kernel.governed ? 1 : 0)
        if let run = kernel.run {
            for mode in RunMode.allCases {
                out.gauge(Families.kernelRunState, run == mode.rawValue ? 1 : 0, [("state", mode.name)])
            }
        }
        for (family, pages) in [(Families.kernelSharing, kernel.pagesSharing), (Families.kernelShared, kernel.pagesShared),
                                (Families.kernelZero, kernel.ksmZeroPages)] {
            if let pages { out.gauge(family, Double(pages * pageSize)) }
        }
        if let profit = kernel.generalProfit { out.gauge(Families.kernelProfit, Double(profit)) }
        if kernel.governed {
            out.gauge(Families.kernelHoldBackFailing, kernel.holdBackFailing == true ? 1 : 0)
            out.counter(Families.kernelHoldBackFailures, kernel.holdBackFailures ?? 0)
        }
    }

    private func writeProcess(_ process: ProcessMetrics, _ out: inout Writer) {
        if let cpu = process.cpuSeconds { out.counter(Families.processCPU, cpu) }
        for (family, value) in [(Families.processResident, process.residentBytes), (Families.processVirtual, process.virtualBytes),
                                (Families.processOpenFDs, process.openFDs), (Families.processMaxFDs, process.maxFDs)] {
            if let value { out.gauge(family, Double(value)) }
        }
        if let start = process.startTimeSeconds { out.gauge(Families.processStart, start) }
    }

    /// Reclaim's figures, globally (`perGuest` false) or for one guest.
    private func writeReclaim(_ r: ReclaimStatus, prefix guest: Bool?, _ labels: [(String, String)], _ out: inout Writer) {
        let f = { (family: Family) in guest == true ? family.perGuest : family }
        out.counter(f(Families.punched), r.zeroPagesReclaimed * pageSize, labels)
        out.counter(f(Families.reclaimed), r.bytesReclaimed, labels)
        out.counter(f(Families.pauses), r.pauses, labels)
        out.counter(f(Families.pauseOverruns), r.pauseOverruns, labels)
        out.counter(f(Families.guestSeenOverruns), r.guestSeenOverruns, labels)
        out.counter(f(Families.refaulted), r.zeroPagesRefaulted * pageSize, labels)
        out.gauge(f(Families.pending), Double(r.pendingPages * pageSize), labels)
        out.gauge(f(Families.held), Double(r.pagesHeld * pageSize), labels)
        out.counter(f(Families.stoppedEarly), r.pausesStoppedEarly, labels)
        for reason in ReclaimDeferral.Reason.allCases {
            out.counter(f(Families.deferrals), r.deferrals(reason), labels + [("reason", reason.rawValue)])
        }
    }

    /// The savings' figures (``Savings``), of the host or one guest.
    private func writeSavings(_ s: Savings, perGuest: Bool, _ labels: [(String, String)], _ out: inout Writer) {
        let f = { (family: Family) in perGuest ? family.perGuest : family }
        out.gauge(f(Families.freed), Double(s.freedBytes), labels)
        out.gauge(f(Families.freeable), Double(s.freeableBytes), labels)
        if let merged = s.kernelMergedBytes { out.gauge(f(Families.kernelMerged), Double(merged), labels) }
        if let only = s.privateRAMOnlyBytes { out.gauge(f(Families.privateRAMOnly), Double(only), labels) }
    }

    private func writeGuest(_ guest: GuestStatus, _ out: inout Writer) {
        let labels = [("uuid", guest.uuid)]
        writeSavings(guest.savings, perGuest: true, labels, &out)
        out.gauge(Families.guestAttributedSharing, Double(guest.attributedSharingBytes), labels)
        out.gauge(Families.guestInfo, 1, labels + [
            ("name", guest.name), ("mode", guest.mode.rawValue), ("trust_group", guest.trustGroup ?? ""),
            ("source", guest.source.rawValue), ("vmid", guest.vmid.map(String.init) ?? ""),
        ])
        out.gauge(Families.guestRAM, Double(Self.ramBytes(guest)), labels)
        for key in Counters.CodingKeys.allCases {
            out.engine(key, guest.counters, labels, perGuest: true)
        }
        writeReclaim(guest.reclaim, prefix: true, labels, &out)
        out.gauge(Families.guestMapped, guest.mapped ? 1 : 0, labels)
        out.gauge(Families.guestEligible, guest.reclaim.eligible ? 1 : 0, labels)
        out.gauge(Families.guestResumeFailing, guest.reclaim.resumeFailure == nil ? 0 : 1, labels)
        out.gauge(Families.guestDeferred, guest.reclaim.deferred == nil ? 0 : 1, labels)
        if let kernel = guest.kernelKSM {
            if let mergeable = kernel.mergeable { out.gauge(Families.guestKernelMergeable, mergeable ? 1 : 0, labels) }
            for (family, pages) in [(Families.guestKernelMerging, kernel.mergingPages), (Families.guestKernelZero, kernel.zeroPages)] {
                if let pages { out.gauge(family, Double(pages * pageSize), labels) }
            }
            if let profit = kernel.processProfit { out.gauge(Families.guestKernelProfit, Double(profit), labels) }
        }
    }

    private static func ramBytes(_ guest: GuestStatus) -> Int {
        guest.regions.reduce(0) { $0 + $1.bytes }
    }

    /// The guest's histograms, made on first use.
    private func histograms(for uuid: String, in all: inout [String: GuestHistograms]) -> GuestHistograms {
        if let existing = all[uuid] { return existing }
        let labels = [("uuid", uuid)]
        let pause = Families.pauseSeconds.perGuest
        let seen = Families.guestSeenPauseSeconds.perGuest
        let made = GuestHistograms(
            pause: registry.makeValueHistogram(name: pause.name, labels: labels, buckets: Self.pauseBucketsSeconds, help: pause.help),
            guestSeen: registry.makeValueHistogram(name: seen.name, labels: labels, buckets: Self.pauseBucketsSeconds, help: seen.help))
        all[uuid] = made
        return made
    }
}

/// Writes series into one scrape's registry.
private struct Writer {
    let registry: PrometheusCollectorRegistry

    func gauge(_ family: Family, _ value: Double, _ labels: [(String, String)] = []) {
        registry.makeGauge(name: family.name, labels: labels, help: family.help).set(value)
    }

    /// A counter at an absolute value: the agent keeps the totals. (A total that went down,
    /// because a guest's slots started over, reads as a counter reset, which Prometheus
    /// handles.)
    func counter(_ family: Family, _ value: Int, _ labels: [(String, String)] = []) {
        registry.makeCounter(name: family.name, labels: labels, help: family.help).increment(by: Int64(max(0, value)))
    }

    /// The same for a total in seconds (written with a fraction: `12.5`).
    func counter(_ family: Family, _ value: Double, _ labels: [(String, String)] = []) {
        registry.makeCounter(name: family.name, labels: labels, help: family.help).increment(by: max(0, value))
    }

    /// One of the engine's counters, in bytes where it counts pages.
    func engine(_ key: Counters.CodingKeys, _ counters: Counters, _ labels: [(String, String)], perGuest: Bool = false) {
        let base = EngineFamily.family(key)
        let family = perGuest ? base.perGuest : base
        let value = counters[key] * (EngineFamily.inPages(key) ? pageSize : 1)
        if key.isCumulative {
            counter(family, value, labels)
        } else {
            gauge(family, Double(value), labels)
        }
    }
}

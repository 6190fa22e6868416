/// Zero-page reclaim for one guest (or, summed, for the host): whether it may happen, and
/// what it did. Bytes come from the backends' allocated blocks before and after each punch.
public struct ReclaimStatus: Sendable, Equatable {
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

    /// Why reclaim waits now although pages are due (the host is too busy for a pause to keep
    /// its budget); nil when it does not wait.
    public var deferred: ReclaimDeferral?
    /// Times a due reclaim began to wait, for each reason.
    public var deferralsForCPUPressure = 0
    public var deferralsForPauseCost = 0
    public var deferralsForMonitorBusy = 0

    /// Pauses whose length the guest saw is known: QEMU's own STOP and RESUME timestamps.
    public var guestSeenPauses = 0
    /// Their total length as the guest saw it, in milliseconds.
    public var guestSeenPauseMillisecondsTotal = 0.0
    /// Pauses the guest saw longer than the policy's `max_pause_ms`.
    public var guestSeenOverruns = 0
    /// Pauses by the length the guest saw, with the buckets of ``pauseHistogram``.
    public var guestSeenPauseHistogram: [Int] = Array(repeating: 0, count: ReclaimStatus.histogramBoundsMs.count)

    /// Upper bounds of the pause histogram's buckets, in milliseconds (the last is +Inf).
    public static let histogramBoundsMs: [Double] = [1, 2, 5, 10, 20, 50, 100, .infinity]

    /// Nothing reclaimed, not eligible.
    public init() {}

    /// Records one pause.
    public mutating func record(pauseMilliseconds: Double, overrun: Bool) {
        pauses += 1
        pauseMillisecondsTotal += pauseMilliseconds
        if overrun { pauseOverruns += 1 }
        let bucket = ReclaimStatus.histogramBoundsMs.firstIndex { pauseMilliseconds <= $0 }!
        pauseHistogram[bucket] += 1
    }

    /// Records what the guest saw of one pause: QEMU's RESUME timestamp less its STOP's.
    public mutating func record(guestSeenMilliseconds: Double, overrun: Bool) {
        guestSeenPauses += 1
        guestSeenPauseMillisecondsTotal += guestSeenMilliseconds
        if overrun { guestSeenOverruns += 1 }
        let bucket = ReclaimStatus.histogramBoundsMs.firstIndex { guestSeenMilliseconds <= $0 }!
        guestSeenPauseHistogram[bucket] += 1
    }

    /// Counts one more deferral for `reason`.
    public mutating func countDeferral(_ reason: ReclaimDeferral.Reason) {
        switch reason {
        case .cpuPressure: deferralsForCPUPressure += 1
        case .pauseCost: deferralsForPauseCost += 1
        case .monitorBusy: deferralsForMonitorBusy += 1
        }
    }

    /// Deferrals so far for `reason`.
    public func deferrals(_ reason: ReclaimDeferral.Reason) -> Int {
        switch reason {
        case .cpuPressure: deferralsForCPUPressure
        case .pauseCost: deferralsForPauseCost
        case .monitorBusy: deferralsForMonitorBusy
        }
    }

    /// Adds another guest's figures (for the host's totals). A deferral is a guest's own and
    /// is not summed.
    public mutating func add(_ other: ReclaimStatus) {
        for (_, count) in Self.counts { self[keyPath: count] += other[keyPath: count] }
        pauseMillisecondsTotal += other.pauseMillisecondsTotal
        guestSeenPauseMillisecondsTotal += other.guestSeenPauseMillisecondsTotal
        for i in pauseHistogram.indices { pauseHistogram[i] += other.pauseHistogram[i] }
        for i in guestSeenPauseHistogram.indices { guestSeenPauseHistogram[i] += other.guestSeenPauseHistogram[i] }
    }
}

/// Why a guest's due reclaim waits: a pause now would likely overrun its budget.
public struct ReclaimDeferral: Sendable, Equatable, Codable {
    /// The reason, as the metrics label it.
    public enum Reason: String, Sendable, Codable, CaseIterable {
        /// The host's CPU pressure (`/proc/pressure/cpu`) is over `reclaim.max_cpu_pressure`.
        case cpuPressure = "cpu_pressure"
        /// The guest's recent suspend and resume calls alone took most of its budget.
        case pauseCost = "pause_cost"
        /// A guest outside libvirt whose QMP socket serves another client (QEMU serves one at
        /// a time): samepaged does not wait for it, and tries again later.
        case monitorBusy = "monitor_busy"
    }

    public var reason: Reason
    /// In an operator's words, with the figures: "host CPU pressure 43.1% over the last
    /// second (limit 10%)".
    public var detail: String

    public init(_ reason: Reason, detail: String) {
        self.reason = reason
        self.detail = detail
    }
}

/// Reclaim's wire form (`"reclaim"` of a guest and of the daemon's stats): every figure, and
/// `reason` and `resume_failure` only when there is one (the synthesized encoding). Missing
/// keys keep their defaults, so a reader copes with a daemon that knows fewer.
extension ReclaimStatus: Codable {
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
        case deferred
        case deferralsForCPUPressure = "deferrals_cpu_pressure"
        case deferralsForPauseCost = "deferrals_pause_cost"
        case deferralsForMonitorBusy = "deferrals_monitor_busy"
        case guestSeenPauses = "guest_seen_pauses"
        case guestSeenPauseMillisecondsTotal = "guest_seen_pause_ms_total"
        case guestSeenOverruns = "guest_seen_overruns"
        case guestSeenPauseHistogram = "guest_seen_pause_histogram"
    }

    /// The counts, each with its key: the figures that ``add(_:)`` sums and the decoder reads
    /// alike (the others are a flag, a reason, a length in milliseconds and the histogram).
    static let counts: [(key: CodingKeys, count: WritableKeyPath<ReclaimStatus, Int> & Sendable)] = [
        (.zeroPagesReclaimed, \.zeroPagesReclaimed),
        (.bytesReclaimed, \.bytesReclaimed),
        (.pauses, \.pauses),
        (.pauseOverruns, \.pauseOverruns),
        (.pendingPages, \.pendingPages),
        (.zeroPagesRefaulted, \.zeroPagesRefaulted),
        (.pagesHeld, \.pagesHeld),
        (.pagesToRepopulate, \.pagesToRepopulate),
        (.pausesStoppedEarly, \.pausesStoppedEarly),
        (.deferralsForCPUPressure, \.deferralsForCPUPressure),
        (.deferralsForPauseCost, \.deferralsForPauseCost),
        (.deferralsForMonitorBusy, \.deferralsForMonitorBusy),
        (.guestSeenPauses, \.guestSeenPauses),
        (.guestSeenOverruns, \.guestSeenOverruns),
    ]

    public init(from decoder: any Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        eligible = try c.decode(.eligible, or: eligible)
        reason = try c.decodeIfPresent(String.self, forKey: .reason)
        for (key, count) in Self.counts { self[keyPath: count] = try c.decode(key, or: self[keyPath: count]) }
        pauseMillisecondsTotal = try c.decode(.pauseMillisecondsTotal, or: pauseMillisecondsTotal)
        resumeFailure = try c.decodeIfPresent(String.self, forKey: .resumeFailure)
        pauseHistogram = try c.decode(.pauseHistogram, or: pauseHistogram)
        deferred = try c.decodeIfPresent(ReclaimDeferral.self, forKey: .deferred)
        guestSeenPauseMillisecondsTotal = try c.decode(.guestSeenPauseMillisecondsTotal, or: guestSeenPauseMillisecondsTotal)
        guestSeenPauseHistogram = try c.decode(.guestSeenPauseHistogram, or: guestSeenPauseHistogram)
    }

    /// The totals that the object holding this status (a guest, the daemon's stats) also
    /// carries as its own top-level keys, next to the kernel-named counters:
    /// `zero_pages_reclaimed`, `bytes_reclaimed` and `pauses`.
    func encodeTotals(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(zeroPagesReclaimed, forKey: .zeroPagesReclaimed)
        try c.encode(bytesReclaimed, forKey: .bytesReclaimed)
        try c.encode(pauses, forKey: .pauses)
    }
}

/// One reclaim pause, as the agent tells it when it ends (the Prometheus pause histogram
/// records these; a snapshot has only their counts).
public struct ReclaimPause: Sendable, Equatable {
    public var guest: GuestIdentity
    /// The guest's trust group, as its policy says.
    public var trustGroup: String?
    /// Suspend call to the return of the resume call.
    public var milliseconds: Double
    /// What the guest saw: QEMU's RESUME timestamp less its STOP's; nil when QEMU's events
    /// did not arrive.
    public var guestSeenMilliseconds: Double?

    public init(guest: GuestIdentity, trustGroup: String?, milliseconds: Double, guestSeenMilliseconds: Double? = nil) {
        self.guest = guest
        self.trustGroup = trustGroup
        self.milliseconds = milliseconds
        self.guestSeenMilliseconds = guestSeenMilliseconds
    }
}

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

    /// Adds another guest's figures (for the host's totals).
    public mutating func add(_ other: ReclaimStatus) {
        for (_, count) in Self.counts { self[keyPath: count] += other[keyPath: count] }
        pauseMillisecondsTotal += other.pauseMillisecondsTotal
        for i in pauseHistogram.indices { pauseHistogram[i] += other.pauseHistogram[i] }
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

    public init(guest: GuestIdentity, trustGroup: String?, milliseconds: Double) {
        self.guest = guest
        self.trustGroup = trustGroup
        self.milliseconds = milliseconds
    }
}

import Foundation
import GuestMemory
import SamepageModel

/// One guest's zero-page reclaim, between and across its pauses: the pages waiting for a
/// pause, the pages reclaimed and those that refaulted, what pauses of this guest have cost,
/// the duty cycle and backoffs, and the totals its status reports.
///
/// Held by ``TrackedGuest`` on the agent's thread. The arithmetic that sizes and spaces pauses
/// lives here and is pure: every instant comes in as a parameter (the clock is read by the
/// caller, never here), so the tests can check it against values worked out by hand. The
/// pause itself (suspend, verify and punch, resume) is ``Reclaimer``'s, and the guest's status
/// changes through the methods here, never field by field from outside.
struct ReclaimState {
    /// The totals the guest's status reports.
    var status = ReclaimStatus()

    /// Confirmed zero pages per region (index into the guest's `regions`), waiting for a pause.
    var pending: [Int: [Int]] = [:]
    var oldestPending: ContinuousClock.Instant?
    /// False once a batch came out empty (only partial huge pages pending): no pause is
    /// tried again until another page is confirmed.
    var batchMayFreeSomething = true

    /// Measured cost of a pause: the fixed part (suspend and resume) and per page, in µs.
    var pauseFixedMicros = 5_000.0
    var pausePerPageMicros = 5.0
    /// Measured cost of the resume call, in µs: kept out of the verify-and-punch deadline.
    var resumeMicros = 3_000.0
    /// Pauses the costs above were learned from; until one, they are guesses and the next
    /// pause is a probe.
    var pausesMeasured = 0
    /// The next pause is a probe: its costs replace the estimates instead of moving them a
    /// fifth of the way (costs learned on a busy host must not outlive it by minutes).
    var probing = false
    /// When the last pause ended: a guest deferred for its pause cost is probed again (one
    /// small pause to learn whether the cost came down) a while after it.
    var lastPauseEnd: ContinuousClock.Instant?
    /// The pause that ended and waits for QEMU's STOP and RESUME events, to learn what the
    /// guest saw of it.
    var awaitingGuestSeen: PauseRecord?
    /// What pauses cost as the guest saw them (QEMU's timestamps): the window of the next.
    var guestSeen = GuestSeenCost()
    /// Pages seen zero once, waiting for the agent's own second look.
    var candidates = ZeroCandidates()
    /// The pages in ``pending``, per region, so that a page confirmed twice (by the second look
    /// and by the engine) waits once.
    private var pendingSet: [Int: Set<Int>] = [:]

    /// The suspended and resumed event counts our last pause will have caused once libvirt
    /// delivered its events, and until when to wait for them: the next pause waits, so that
    /// a late event of our own pause is never taken for someone else's.
    var ownEvents: (suspended: Int, resumed: Int, until: ContinuousClock.Instant)?
    /// Recent pauses, for the per-minute duty cycle; forgotten a minute after they ended.
    var recentPauses: [(end: ContinuousClock.Instant, milliseconds: Double)] = []
    /// No pause before this (after an overrun, many refaults, a busy or faulty peer).
    var backoffUntil: ContinuousClock.Instant?
    /// Pauses in a row that could not start for a fault of the guest's peer (its QMP monitor
    /// hangs, floods, breaks the protocol): the backoff grows with them.
    var peerFaults = 0

    /// Per region: pages reclaimed and still holes, and pages that refaulted after a reclaim
    /// (never reclaimed again while the guest runs).
    var held: [Int: PageSet] = [:] { didSet { pagesGeneration &+= 1 } }
    var hot: [Int: PageSet] = [:] { didSet { pagesGeneration &+= 1 } }
    /// Changes whenever ``held`` or ``hot`` does: what ``PunchRecords`` records anew.
    private(set) var pagesGeneration = 0
    var nextRefaultCheck = ContinuousClock.now
    var reclaimedSinceRefaultCheck = 0

    /// Pages pending over all regions. O(regions).
    var pendingPages: Int { pending.values.reduce(0) { $0 + $1.count } }
    /// Pages reclaimed and still holes over all regions. O(ranges).
    var heldPages: Int { held.values.reduce(0) { $0 + $1.count } }

    // MARK: Waits

    /// Starts or goes on with a wait for `deferral`. Returns true when the wait is new or its
    /// reason changed: counted then, and to be logged once.
    mutating func recordDeferral(_ deferral: ReclaimDeferral) -> Bool {
        let new = status.deferred?.reason != deferral.reason
        if new { status.countDeferral(deferral.reason) }
        status.deferred = deferral
        return new
    }

    /// Ends the wait under way, if any, and returns it.
    @discardableResult
    mutating func clearDeferral() -> ReclaimDeferral? {
        defer { status.deferred = nil }
        return status.deferred
    }

    /// Ends a wait that no longer applies because nothing is due (no page pending).
    mutating func clearDeferralIfIdle() {
        if status.deferred != nil, pendingPages == 0 { status.deferred = nil }
    }

    /// Says (or, with nil, stops saying) that a pause of ours has not ended: why its
    /// resume has not succeeded yet.
    mutating func setResumeFailure(_ failure: String?) { status.resumeFailure = failure }

    // MARK: Pages

    /// Drops the pages waiting for a pause (a mode that does not reclaim, `run unmerge`).
    mutating func forgetPending() {
        pending = [:]
        pendingSet = [:]
        oldestPending = nil
        candidates.removeAll()
    }

    /// Forgets every page of the guest's backends, which are closed (unmapped).
    mutating func forgetPages() {
        forgetPending()
        held = [:]
        hot = [:]
    }

    /// The totals of a guest that leaves (nothing of it is pending any more), and a fresh
    /// status for it.
    mutating func takeTotals() -> ReclaimStatus {
        var totals = status
        totals.pendingPages = 0
        status = ReclaimStatus()
        return totals
    }

    /// Puts back the pages of a batch that was not punched (its peer was busy).
    mutating func putBack(_ batch: [(region: Int, pages: [Int])], at now: ContinuousClock.Instant) {
        for (region, pages) in batch {
            for page in pages { addPending(page: page, region: region, at: now) }
        }
    }

    /// Counts the ranges a pause punched as held (holes), `regionPages(region)` pages in
    /// each region.
    mutating func hold(_ punched: [Int: [Range<Int>]], regionPages: (Int) -> Int?) {
        for (region, ranges) in punched {
            guard let pages = regionPages(region) else { continue }
            for range in ranges { held[region, default: PageSet(pageCount: pages)].insert(range) }
        }
    }

    /// Takes up to `limit` pending pages, region by region (indices into `regions`); on
    /// hugetlbfs only pages that make up whole huge pages (a smaller punch frees nothing),
    /// the others stay pending. `now` restarts the wait of what stays.
    mutating func takeBatch(limit: Int, regions: [GuestRegion], at now: ContinuousClock.Instant) -> [(region: Int, pages: [Int])] {
        var batch: [(region: Int, pages: [Int])] = []
        var taken = 0
        for region in pending.keys.sorted() where taken < limit && region < regions.count {
            var pages = pending[region]!
            if let layout = regions[region].hugePageLayout {
                let whole = regions[region].reclaimablePages(among: pages)
                guard !whole.isEmpty else { continue }
                let perHugePage = layout.pagesPerHugePage
                // Whole huge pages only, never a part of one.
                let take = min(whole.count, max(perHugePage, (limit - taken) / perHugePage * perHugePage))
                let chosen = Array(whole.prefix(take))
                let chosenSet = Set(chosen)
                pages.removeAll { chosenSet.contains($0) }
                batch.append((region, chosen))
                pending[region] = pages.isEmpty ? nil : pages
                taken += chosen.count
                continue
            }
            let take = min(pages.count, limit - taken)
            batch.append((region, Array(pages.prefix(take))))
            pages.removeFirst(take)
            pending[region] = pages.isEmpty ? nil : pages
            taken += take
        }
        oldestPending = pending.isEmpty ? nil : now
        for (region, pages) in batch { pendingSet[region]?.subtract(pages) }
        return batch
    }

    /// Counts what a pause of `milliseconds` did (within `maxPauseMs` or over it).
    mutating func countPause(milliseconds: Double, maxPauseMs: Int, outcome: ZeroPageReclaim, stoppedEarly: Bool) {
        status.record(pauseMilliseconds: milliseconds, overrun: milliseconds > Double(maxPauseMs))
        if stoppedEarly { status.pausesStoppedEarly += 1 }
        status.zeroPagesReclaimed += outcome.pagesPunched
        reclaimedSinceRefaultCheck += outcome.pagesPunched
        status.bytesReclaimed += outcome.bytesFreed
    }

    // MARK: Between pauses

    /// Most pages one region may have pending: a guest that cannot be paused must not grow
    /// the agent without limit.
    static let pendingLimitPerRegion = 1 << 18

    /// Files a confirmed zero page of `region` for a pause, unless it refaulted after an
    /// earlier reclaim (it is hot) or the region has ``pendingLimitPerRegion`` pages pending.
    /// `now` starts the wait of the oldest pending page if none was pending.
    mutating func addPending(page: Int, region: Int, at now: ContinuousClock.Instant) {
        guard hot[region]?.contains(page) != true,
            pending[region, default: []].count < Self.pendingLimitPerRegion,
            pendingSet[region, default: []].insert(page).inserted
        else { return }
        pending[region, default: []].append(page)
        batchMayFreeSomething = true
        if oldestPending == nil { oldestPending = now }
    }

    /// Whether a pause is due at `now`: pages are pending, a batch of them may free
    /// something, there are at least `batchMinimum` of them or the oldest has waited `delay`,
    /// and the guest is not backed off. (Eligibility and the duty cycle are asked apart.)
    func isDue(at now: ContinuousClock.Instant, batchMinimum: Int, delay: Duration) -> Bool {
        let count = pendingPages
        guard count > 0, batchMayFreeSomething, let oldest = oldestPending else { return false }
        guard count >= batchMinimum || now - oldest >= delay else { return false }
        if let until = backoffUntil, now < until { return false }
        return true
    }

    /// The duty cycle: milliseconds paused by pauses that ended in the minute up to `now`
    /// (one that ended exactly a minute ago still counts). Older pauses are forgotten.
    mutating func millisecondsPaused(inMinuteUpTo now: ContinuousClock.Instant) -> Double {
        recentPauses.removeAll { now - $0.end > .seconds(60) }
        return recentPauses.reduce(0) { $0 + $1.milliseconds }
    }

    /// Whether one more pause of up to `maxPauseMs` at `now` keeps the last minute's paused
    /// time within `maxPauseMsPerMinute`.
    mutating func dutyCycleAllows(maxPauseMs: Int, maxPauseMsPerMinute: Int, at now: ContinuousClock.Instant) -> Bool {
        millisecondsPaused(inMinuteUpTo: now) + Double(maxPauseMs) <= Double(maxPauseMsPerMinute)
    }

    /// How many pending pages the next pause may take so that it stays within `maxPauseMs`,
    /// from the measured costs. It aims at 70% of the budget, since suspend and resume (most
    /// of a pause) vary by a millisecond or two: the fixed cost comes off 70% of the budget
    /// and the rest is divided by the per-page cost (taken as at least 0.5 µs). Never fewer
    /// than 64 pages, the smallest batch the per-page cost is learned from.
    func batchSize(maxPauseMs: Int) -> Int {
        guard pausesMeasured > 0 else { return Self.probePages }
        return PauseBudget(maxPauseMs: maxPauseMs).batchPages(fixedMicros: pauseFixedMicros, perPageMicros: pausePerPageMicros)
    }

    /// The batch of a probe: the first pause of a guest, whose costs are not known yet, and
    /// a pause after a deferral for cost.
    static let probePages = PauseBudget.minimumBatchPages

    /// How long after its last pause a guest deferred for its pause cost is probed again.
    static let costProbeInterval: Duration = .seconds(60)

    /// Whether a pause now can be expected to end within `maxPauseMs` as the guest sees it; the
    /// reason to wait when not. Pure: `now` comes in.
    ///
    /// - With QEMU's `STOP` and `RESUME` timestamps (``guestSeen``): when the time the guest
    ///   is stopped around our punching leaves no window for the smallest batch, a pause would
    ///   overrun for nothing.
    /// - Without them: the measured fixed cost of the calls (suspend and resume) over 80% of
    ///   the budget.
    ///
    /// Either way a probe is let through ``costProbeInterval`` after the last pause, since
    /// nothing else can show that the cost came down. The host's CPU pressure is not a reason
    /// to wait (``pressureSpacing(pressure:limit:)`` spaces pauses out instead); a saturated
    /// host is (``HostCPULoad/busyDeferral(pressureLimit:)``).
    func deferral(maxPauseMs: Int, at now: ContinuousClock.Instant) -> ReclaimDeferral? {
        if let last = lastPauseEnd, now - last >= Self.costProbeInterval { return nil }
        let probeAgain = "probing again \(Int(Self.costProbeInterval.inSeconds)) s after the last pause"
        if let window = guestSeen.punchWindow(maxPauseMs: maxPauseMs) {
            guard window == .zero, let overhead = guestSeen.plannedOverheadMicros else { return nil }
            return ReclaimDeferral(
                .pauseCost,
                detail: "QEMU keeps the guest stopped \(Self.format(overhead / 1000)) ms around a pause of ours (STOP to RESUME), leaving no room within max_pause_ms \(maxPauseMs); \(probeAgain)")
        }
        let fixedMs = pauseFixedMicros / 1000
        guard pausesMeasured > 0, PauseBudget(maxPauseMs: maxPauseMs).fixedCostLeavesNoRoom(fixedMicros: pauseFixedMicros) else { return nil }
        return ReclaimDeferral(.pauseCost, detail: "suspend and resume take \(Self.format(fixedMs)) ms of max_pause_ms \(maxPauseMs); \(probeAgain)")
    }

    /// How far apart pauses of a guest are kept while the host's CPU pressure (`pressure`, in
    /// percent) is over `limit`: a second for each multiple of the limit, at most 30 s; nil
    /// when it is not over (or unknown). Pressure makes pauses rarer, never impossible: vCPU
    /// threads wait for CPUs all the time on a consolidated host while a pause can still be
    /// short, and what the guest saw of each pause keeps deciding whether it is.
    static func pressureSpacing(pressure: Double?, limit: Double) -> Duration? {
        guard let pressure, limit < 100, pressure > limit else { return nil }
        return min(.seconds(30), .milliseconds(Int64(1000 * pressure / max(limit, 1))))
    }

    private static func format(_ value: Double) -> String { String(format: "%.1f", value) }

    // MARK: After a pause

    /// Learns the cost of a pause from its instants: the suspend call (`start`), its return
    /// (`suspended`), the end of verifying and punching (`punched`), and the return of the
    /// resume (`end`), `pagesExamined` pages having been verified.
    ///
    /// Each estimate moves a fifth of the way to the new sample (per page: 30%). Slow suspends
    /// happen (the first one of a guest, a busy host): one outlier must not shrink every later
    /// batch, so a fixed-cost or resume sample counts for at most twice the estimate. The
    /// per-page cost is learned only from batches of 64 pages or more, large enough to show it.
    mutating func learnCosts(
        start: ContinuousClock.Instant, suspended: ContinuousClock.Instant,
        punched: ContinuousClock.Instant, end: ContinuousClock.Instant, pagesExamined: Int
    ) {
        let resume = (end - punched).inMilliseconds * 1000
        let fixed = (suspended - start).inMilliseconds * 1000 + resume
        let examined = max(1, pagesExamined)
        let perPage = (punched - suspended).inMilliseconds * 1000 / Double(examined)
        if pausesMeasured == 0 || probing {
            // A probe's measurement replaces the estimates: the first one replaces guesses,
            // a later one costs learned while the host was busier.
            pauseFixedMicros = fixed
            resumeMicros = resume
        } else {
            pauseFixedMicros = 0.8 * pauseFixedMicros + 0.2 * min(fixed, 2 * pauseFixedMicros)
            resumeMicros = 0.8 * resumeMicros + 0.2 * min(resume, 2 * resumeMicros)
        }
        pausesMeasured += 1
        probing = false
        lastPauseEnd = end
        if examined >= 64 {
            pausePerPageMicros = 0.7 * pausePerPageMicros + 0.3 * perPage
        }
    }

    /// How long a guest is backed off after a pause over its budget, `recentOverruns` being
    /// the overruns among its recent pauses, this one included: 2 s for each, at most 30 s.
    static func overrunBackoffSeconds(recentOverruns: Int) -> Int { min(30, 2 * recentOverruns) }

    /// Records a pause that ended at `end` after `milliseconds`, for the duty cycle. A pause
    /// over `maxPauseMs` backs the guest off (``overrunBackoffSeconds(recentOverruns:)`` from
    /// `end`, counting the overruns among the pauses still remembered); the batch size follows
    /// the measured costs by itself. Returns the backoff in seconds, nil when within budget.
    mutating func recordPause(end: ContinuousClock.Instant, milliseconds: Double, maxPauseMs: Int) -> Int? {
        recentPauses.append((end, milliseconds))
        guard milliseconds > Double(maxPauseMs) else { return nil }
        let recentOverruns = recentPauses.filter { $0.milliseconds > Double(maxPauseMs) }.count
        let seconds = Self.overrunBackoffSeconds(recentOverruns: recentOverruns)
        backoffUntil = end + .seconds(seconds)
        return seconds
    }
}

/// How long one pause of a guest may last, and what fits in it: the one place where the
/// budget `max_pause_ms` is turned into a deadline for punching, a batch size and a verdict on
/// whether suspend and resume alone leave room for work.
///
/// Pure: every cost comes in as a parameter (measured by ``ReclaimState``), so the tests check
/// it against figures worked out by hand.
struct PauseBudget: Equatable, Sendable {
    /// The most a pause may last, as the guest sees it (QEMU's STOP to RESUME).
    let maxPauseMs: Int

    /// Batches are sized for this share of the budget: suspend and resume, most of a pause,
    /// vary by a millisecond or two.
    static let plannedShare = 0.7
    /// A guest whose suspend and resume take more than this share of the budget waits
    /// (probed again now and then): a pause would overrun before a page is punched.
    static let fixedCostShareLimit = 0.8
    /// The expected resume cost is kept out of the punching window with this margin.
    static let resumeMargin = 1.2
    /// The shortest punching window: a probe must do real work to measure anything.
    static let minimumPunchWindow: Duration = .milliseconds(1)
    /// The smallest batch, from which the per-page cost is learned.
    static let minimumBatchPages = 64

    init(maxPauseMs: Int) { self.maxPauseMs = maxPauseMs }

    /// How long after the suspend call punching may go on: the budget less the expected
    /// resume (with ``resumeMargin``), at least ``minimumPunchWindow``.
    func punchWindow(expectedResumeMicros: Double) -> Duration {
        let micros = Double(maxPauseMs) * 1000 - expectedResumeMicros * Self.resumeMargin
        return max(Self.minimumPunchWindow, .microseconds(Int64(max(0, micros))))
    }

    /// How many pages a pause may take so that it ends within the budget, from the measured
    /// fixed cost (suspend and resume) and cost per page, both in µs: the fixed cost comes off
    /// ``plannedShare`` of the budget and the rest is divided by the per-page cost (taken as at
    /// least 0.5 µs). Never fewer than ``minimumBatchPages``.
    func batchPages(fixedMicros: Double, perPageMicros: Double) -> Int {
        let room = max(0, Double(maxPauseMs) * 1000 * Self.plannedShare - fixedMicros)
        return max(Self.minimumBatchPages, Int(room / max(perPageMicros, 0.5)))
    }

    /// Whether suspend and resume alone (`fixedMicros`) take more than ``fixedCostShareLimit``
    /// of the budget.
    func fixedCostLeavesNoRoom(fixedMicros: Double) -> Bool {
        fixedMicros / 1000 > Double(maxPauseMs) * Self.fixedCostShareLimit
    }
}

/// What a pause of this guest costs as the guest sees it, learned from QEMU's own `STOP` and
/// `RESUME` timestamps: the time the guest is stopped around our punching (QEMU stopping the
/// vCPUs and draining I/O after our suspend reached it, the resume reaching it and QEMU
/// starting them again), which is what `max_pause_ms` budgets.
///
/// The calls' own latency is not in it: on a busy host a suspend call can take 15 ms to
/// return while the guest is stopped for 8 ms of them, and a budget charged with call-to-return
/// would forbid pauses that the guest barely notices. So the punching window of the next pause
/// is the budget less this overhead, counted from the suspend call's return, and a pause whose
/// window cannot hold the smallest batch is not started.
///
/// Pure: samples come in from the pause records, and every figure is worked out from them.
struct GuestSeenCost: Equatable {
    /// The overheads (guest-seen length less punching) of the latest pauses, in µs, oldest first.
    private(set) var overheads: [Double] = []
    /// How many samples are kept.
    static let kept = 8
    /// Kept apart from the budget for the variation a sample does not show.
    static let marginMicros = 500.0
    /// The shortest window a pause is started for: a probe's minimum batch of 64 pages at a few
    /// µs each, with room to spare.
    static let minimumWindow: Duration = .milliseconds(1)

    /// Adds a pause whose guest saw `guestSeenMs` while we punched for `punchMs`.
    mutating func add(guestSeenMs: Double, punchMs: Double) {
        overheads.append(max(0, guestSeenMs - punchMs) * 1000)
        if overheads.count > Self.kept { overheads.removeFirst(overheads.count - Self.kept) }
    }

    /// Forgets what was learned (a probe after a long wait starts afresh).
    mutating func reset() { overheads = [] }

    /// The overhead to plan for: a high quantile of the samples (the largest of fewer than four,
    /// else the second largest), in µs; nil before any sample.
    var plannedOverheadMicros: Double? {
        guard !overheads.isEmpty else { return nil }
        let sorted = overheads.sorted(by: >)
        return sorted.count < 4 ? sorted[0] : sorted[1]
    }

    /// How long punching may go on after the suspend call returns so that the guest sees at
    /// most `maxPauseMs`; nil before any sample (the budget then counts from the call), and
    /// ``Duration/zero`` when not even ``minimumWindow`` is left.
    func punchWindow(maxPauseMs: Int) -> Duration? {
        guard let overhead = plannedOverheadMicros else { return nil }
        let micros = Double(maxPauseMs) * 1000 - overhead - Self.marginMicros
        let window = Duration.microseconds(Int64(max(0, micros)))
        return window >= Self.minimumWindow ? window : .zero
    }
}

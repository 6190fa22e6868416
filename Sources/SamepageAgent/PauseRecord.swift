/// A reclaim pause that ended and waits for its guest's QEMU `STOP` and `RESUME` monitor
/// events (delivered after the calls return), to be recorded with both lengths: from our
/// suspend call to the return of our resume call, and what the guest saw, QEMU's `RESUME`
/// timestamp less its `STOP`'s.
struct PauseRecord {
    /// Wall-clock seconds at our suspend call and at the return of our resume: QEMU stamps its
    /// events with the same clock.
    var wallStart: Double
    var wallEnd: Double
    /// Suspend call to the return of the resume call.
    var milliseconds: Double
    /// How long it punched (the return of the suspend call to the end of punching).
    var punchMilliseconds: Double = 0
    /// When the resume returned: the duty cycle and backoffs count from it.
    var end: ContinuousClock.Instant = .now
    /// The policy's budget when the pause was made.
    var maxPauseMs: Int
    /// The audit line, less what the guest saw.
    var audit: String
    /// After this the events are given up on: the guest-seen length stays unknown.
    var until: ContinuousClock.Instant

    /// Clock slack allowed between our reading of the wall clock and QEMU's.
    static let slack = 0.002

    /// What the guest saw, in milliseconds, from the guest's recent monitor events: the first
    /// `STOP` stamped within the pause and the first `RESUME` after it. nil until both are
    /// there (a `RESUME` may be stamped after `wallEnd` when someone else ended the pause).
    func guestSeenMilliseconds(among events: [GuestMonitorEvent]) -> Double? {
        guard let stop = events.first(where: { $0.kind == .stop && $0.timestamp >= wallStart - Self.slack && $0.timestamp <= wallEnd + Self.slack }),
            let resume = events.first(where: { $0.kind == .resume && $0.timestamp >= stop.timestamp })
        else { return nil }
        return (resume.timestamp - stop.timestamp) * 1000
    }
}

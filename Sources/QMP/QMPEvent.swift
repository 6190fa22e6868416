/// An asynchronous event from QEMU's monitor: `{"event": "STOP", "data": {…},
/// "timestamp": {"seconds": S, "microseconds": U}}`.
///
/// QEMU sends events whenever they happen, interleaved with replies: a `STOP` arrives before
/// the reply to the `stop` that caused it (QEMU stops the vCPUs, emits the event, then drains
/// block I/O and only then replies). ``QMPConnection`` keeps every event it reads while
/// waiting for a reply, in order, for ``QMPConnection/takeEvents()``.
///
/// This is the event libvirt passes on as `QemuMonitorEvent` (module Libvirt), read here
/// from the socket itself.
public struct QMPEvent: Sendable, Hashable {
    /// The event's name, such as `STOP`, `RESUME`, `SHUTDOWN` or `JOB_STATUS_CHANGE`.
    public var name: String
    /// The event's `data` member: an object, or `.object([:])` for an event without data
    /// (`STOP` and `RESUME` have none).
    public var data: QMPValue
    /// When QEMU emitted it.
    public var timestamp: QMPTimestamp

    public init(name: String, data: QMPValue = .object([:]), timestamp: QMPTimestamp) {
        self.name = name
        self.data = data
        self.timestamp = timestamp
    }

    /// The event in `message`, if it is one (has an `event` member); throws a description of
    /// what is wrong with an event that lacks its name or timestamp.
    init?(message: QMPValue) throws(QMPReplyError) {
        guard let name = message["event"] else { return nil }
        guard let name = name.stringValue else { throw QMPReplyError("an event's name is not a string") }
        guard let stamp = message["timestamp"],
            let seconds = stamp["seconds"]?.int64Value, let microseconds = stamp["microseconds"]?.int64Value
        else { throw QMPReplyError("event \(name) has no timestamp {seconds, microseconds}") }
        self.init(name: name, data: message["data"] ?? .object([:]), timestamp: QMPTimestamp(seconds: seconds, microseconds: microseconds))
    }
}

/// QEMU's timestamp of an event: the host's wall clock (`g_get_real_time`) when it was
/// emitted, in whole seconds and microseconds since the Unix epoch.
///
/// Wall clock, not monotonic: two stamps give the time between two events of one QEMU
/// (a `STOP` and its `RESUME`: the pause the guest saw), but compared with a monotonic clock
/// of this process they are off by whatever the wall clock was stepped.
public struct QMPTimestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Whole seconds since the epoch.
    public var seconds: Int64
    /// Microseconds past ``seconds`` (0 to 999 999).
    public var microseconds: Int64

    public init(seconds: Int64, microseconds: Int64) {
        self.seconds = seconds
        self.microseconds = microseconds
    }

    /// The time since the epoch, exact.
    public var sinceEpoch: Duration { .seconds(seconds) + .microseconds(microseconds) }

    /// Seconds since the epoch as a `Double`, as libvirt's `QemuMonitorEvent.timestamp` and
    /// Foundation's `Date(timeIntervalSince1970:)` take it.
    public var secondsSinceEpoch: Double { Double(seconds) + Double(microseconds) / 1e6 }

    public static func < (lhs: QMPTimestamp, rhs: QMPTimestamp) -> Bool {
        (lhs.seconds, lhs.microseconds) < (rhs.seconds, rhs.microseconds)
    }

    /// `S.UUUUUU`, seconds since the epoch.
    public var description: String {
        let fraction = String(microseconds)
        return "\(seconds).\(String(repeating: "0", count: max(0, 6 - fraction.count)))\(fraction)"
    }
}

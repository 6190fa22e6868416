/// The host's CPU time by state, from the first line of `/proc/stat` (in clock ticks, all
/// CPUs together): what share of the CPUs sat idle between two readings.
///
/// Pressure (`PressureStall`) counts time some task waited, which a CPU hog per core alone
/// does not cause: it shows only once something else wakes. A pause makes libvirtd and QEMU
/// wake, and on CPUs that are all busy they wait for a slice. Idle time says that before.
public struct CPUTimes: Sendable, Equatable {
    /// Ticks idle (`idle` + `iowait`) and in all (every field but guest time, which `user`
    /// already includes).
    public var idle: UInt64
    public var total: UInt64

    public init(idle: UInt64, total: UInt64) {
        self.idle = idle
        self.total = total
    }

    /// Parses the text of `/proc/stat`; nil without a well-formed `cpu ` line.
    public init?(parsing text: String) {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return nil }
        let fields = line.split(separator: " ").dropFirst().map { UInt64($0) }
        guard fields.count >= 4, fields.allSatisfy({ $0 != nil }) else { return nil }
        let values = fields.map { $0! }
        // user nice system idle iowait irq softirq steal [guest guest_nice]
        let counted = values.prefix(8)
        idle = values[3] + (values.count > 4 ? values[4] : 0)
        total = counted.reduce(0, +)
    }

    /// Reads `/proc/stat`.
    public static func read() throws(SystemError) -> CPUTimes {
        try readParsedFile("/proc/stat", limit: 1 << 20) { CPUTimes(parsing: $0) }
    }

    /// The idle share, in percent, of the time from `earlier` to this reading; nil when no
    /// tick passed (or the counters went backwards).
    public func idlePercent(since earlier: CPUTimes) -> Double? {
        guard total > earlier.total, idle >= earlier.idle else { return nil }
        return min(100, Double(idle - earlier.idle) / Double(total - earlier.total) * 100)
    }
}

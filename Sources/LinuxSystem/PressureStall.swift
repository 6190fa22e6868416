/// One resource's pressure stall information, as `/proc/pressure/cpu` (or `memory`, `io`)
/// gives it: the share of time some task (the `some` line) or every task (`full`) waited for
/// the resource, averaged over 10, 60 and 300 seconds, and the total stalled time.
///
/// ```text
/// some avg10=0.69 avg60=4.96 avg300=10.90 total=2093555603
/// full avg10=0.00 avg60=0.00 avg300=0.00 total=0
/// ```
///
/// The averages lag (the 10-second one takes seconds to rise when a load starts); the
/// `total`s, in microseconds, give the pressure over any window two readings span: see
/// ``PressureWindow``.
public struct PressureStall: Sendable, Equatable {
    /// One line: the averages in percent, the total in microseconds.
    public struct Line: Sendable, Equatable {
        public var avg10: Double
        public var avg60: Double
        public var avg300: Double
        public var totalMicroseconds: UInt64

        public init(avg10: Double, avg60: Double, avg300: Double, totalMicroseconds: UInt64) {
            self.avg10 = avg10
            self.avg60 = avg60
            self.avg300 = avg300
            self.totalMicroseconds = totalMicroseconds
        }
    }

    /// Some task waited.
    public var some: Line
    /// Every non-idle task waited; nil where the kernel writes no such line (older kernels'
    /// CPU file).
    public var full: Line?

    public init(some: Line, full: Line?) {
        self.some = some
        self.full = full
    }

    /// Parses the file's text; nil when it has no well-formed `some` line.
    public init?(parsing text: String) {
        var some: Line?
        var full: Line?
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard let kind = fields.first else { continue }
            var values: [Substring: Substring] = [:]
            for field in fields.dropFirst() {
                guard let equals = field.firstIndex(of: "=") else { return nil }
                values[field[..<equals]] = field[field.index(after: equals)...]
            }
            guard let avg10 = values["avg10"].flatMap({ Double($0) }),
                let avg60 = values["avg60"].flatMap({ Double($0) }),
                let avg300 = values["avg300"].flatMap({ Double($0) }),
                let total = values["total"].flatMap({ UInt64($0) })
            else { return nil }
            let parsed = Line(avg10: avg10, avg60: avg60, avg300: avg300, totalMicroseconds: total)
            switch kind {
            case "some": some = parsed
            case "full": full = parsed
            default: continue
            }
        }
        guard let some else { return nil }
        self.init(some: some, full: full)
    }

    /// Reads `/proc/pressure/RESOURCE` (`cpu`, `memory`, `io`).
    ///
    /// - Throws: ``SystemError`` when the file cannot be read (a kernel without PSI, or
    ///   `psi=0` on its command line), or `EINVAL` when its text is not understood.
    public static func read(_ resource: String) throws(SystemError) -> PressureStall {
        try readParsedFile("/proc/pressure/\(resource)", limit: 4096, PressureStall.init(parsing:))
    }
}

/// The pressure over the time between two readings of a `some` total: what share of those
/// microseconds some task spent waiting. Fresher than the kernel's 10-second average.
public struct PressureWindow: Sendable {
    /// When the window's first reading was taken and what its total was.
    public private(set) var start: (at: ContinuousClock.Instant, total: UInt64)?
    /// The pressure, in percent, over the last complete window; nil before one completed.
    public private(set) var percent: Double?

    /// The shortest window a pressure is computed over: a shorter one is too noisy.
    public let minimumSpan: Duration

    public init(minimumSpan: Duration = .seconds(1)) {
        self.minimumSpan = minimumSpan
    }

    /// Adds a reading of `total` (microseconds stalled so far) taken at `now`. Once the window
    /// spans at least ``minimumSpan``, its pressure becomes ``percent`` and a new window starts
    /// here. A total that went backwards (it never does on one boot) restarts the window.
    public mutating func add(total: UInt64, at now: ContinuousClock.Instant) {
        guard let start, total >= start.total else {
            self.start = (now, total)
            return
        }
        let span = now - start.at
        guard span >= minimumSpan else { return }
        let spanMicroseconds = Double(span.components.seconds) * 1e6 + Double(span.components.attoseconds) / 1e12
        percent = min(100, Double(total - start.total) / spanMicroseconds * 100)
        self.start = (now, total)
    }

}

/// The scanner's knobs, with the kernel's names and defaults where the kernel has them.
/// All of them may change between batches.
///
/// `pages_to_scan` has two masters, as in the kernel since 6.8: with `advisor_mode = "none"`
/// it is set by hand; with `advisor_mode = "scan-time"` the scan-time advisor
/// (``ScanTimeAdvisor``) sets it after every full scan, and nobody else may. The engine only
/// reads it; whoever drives the engine runs the advisor.
///
/// On the wire (its `Codable` form): one key each with the kernel's name; the daemon's stats
/// carry them as their own top-level keys. The advisor's keys may be missing on decode (a
/// daemon from before the advisor): the advisor is then off (`"none"`), its other knobs at
/// the kernel's defaults.
public struct Tunables: Sendable, Equatable, Codable {
    /// Pages visited per batch (`pages_to_scan`, kernel default 100). The advisor's to set
    /// while ``advisorMode`` is ``AdvisorMode/scanTime``.
    public var pagesToScan: Int
    /// Pause between batches (`sleep_millisecs`, kernel default 20). The engine itself never
    /// sleeps; its driver does.
    public var sleepMillisecs: Int
    /// Cap on stable-tree nodes (merged contents tracked); 0 = unlimited. Bounds the agent's
    /// tracking memory; it frees nothing. Promotions refused at the cap are counted.
    public var maxKernelPages: Int
    /// Cap on the pages sharing one stable node (`max_page_sharing`, kernel default 256);
    /// 0 = unlimited, otherwise at least 2. A full node gets a sibling with the same content.
    public var maxPageSharing: Int
    /// Skip pages that keep failing to merge, for exponentially more passes (`smart_scan`).
    public var smartScan: Bool
    /// Who sets `pages_to_scan` (`advisor_mode`, kernel default `none`).
    public var advisorMode: AdvisorMode
    /// The time one full scan should take, in seconds (`advisor_target_scan_time`, kernel
    /// default 200): the advisor's goal.
    public var advisorTargetScanTime: Int
    /// The most CPU the advisor plans for the scanning thread, in percent of one core
    /// (`advisor_max_cpu`, kernel default 70).
    public var advisorMaxCPU: Int
    /// The `pages_to_scan` the advisor starts from when it is turned on
    /// (`advisor_min_pages_to_scan`, kernel default 500). Despite its name, not a floor: the
    /// advisor may go below it (as Linux's corrected documentation says).
    public var advisorMinPagesToScan: Int
    /// The most `pages_to_scan` the advisor sets (`advisor_max_pages_to_scan`, kernel
    /// default 30000).
    public var advisorMaxPagesToScan: Int

    /// The knobs' names, the kernel's (`/sys/kernel/mm/ksm/NAME`): the one table that
    /// configuration files, control requests and responses, and errors take them from.
    public enum CodingKeys: String, CodingKey, CaseIterable, Sendable {
        case pagesToScan = "pages_to_scan"
        case sleepMillisecs = "sleep_millisecs"
        case maxKernelPages = "max_kernel_pages"
        case maxPageSharing = "max_page_sharing"
        case smartScan = "smart_scan"
        case advisorMode = "advisor_mode"
        case advisorTargetScanTime = "advisor_target_scan_time"
        case advisorMaxCPU = "advisor_max_cpu"
        case advisorMinPagesToScan = "advisor_min_pages_to_scan"
        case advisorMaxPagesToScan = "advisor_max_pages_to_scan"
    }

    /// The kernel's `pages_to_scan` when nobody set it (`DEFAULT_PAGES_TO_SCAN`).
    public static let defaultPagesToScan = 100

    /// The knobs; each left out takes its default (the kernel's, where it has one). The
    /// advisor is off unless asked for, as in the kernel.
    public init(
        pagesToScan: Int = Tunables.defaultPagesToScan, sleepMillisecs: Int = 20, maxKernelPages: Int = 0,
        maxPageSharing: Int = 256, smartScan: Bool = true, advisorMode: AdvisorMode = .off,
        advisorTargetScanTime: Int = 200, advisorMaxCPU: Int = 70, advisorMinPagesToScan: Int = 500,
        advisorMaxPagesToScan: Int = 30_000
    ) {
        self.pagesToScan = pagesToScan
        self.sleepMillisecs = sleepMillisecs
        self.maxKernelPages = maxKernelPages
        self.maxPageSharing = maxPageSharing
        self.smartScan = smartScan
        self.advisorMode = advisorMode
        self.advisorTargetScanTime = advisorTargetScanTime
        self.advisorMaxCPU = advisorMaxCPU
        self.advisorMinPagesToScan = advisorMinPagesToScan
        self.advisorMaxPagesToScan = advisorMaxPagesToScan
    }

    /// One of the integer knobs.
    public typealias Knob = IntegerKnob<Tunables, CodingKeys>

    /// The integer knobs: the one table of their ranges, which files, requests and the engine
    /// check them against. The scan rate's knobs (and `sleep_millisecs`) are the kernel's
    /// `unsigned int`s, `max_page_sharing` its `int`: above those no request or file may go.
    public static let integerKnobs: [Knob] = [
        Knob(.pagesToScan, \.pagesToScan, expected: "at least 1", maximum: unsigned) { $0 >= 1 },
        // At most a minute: the agent's loop also ends pauses and answers requests between sleeps.
        Knob(.sleepMillisecs, \.sleepMillisecs, 0...60_000),
        Knob(.maxKernelPages, \.maxKernelPages, expected: "0 (unlimited) or more") { $0 >= 0 },
        Knob(.maxPageSharing, \.maxPageSharing, expected: "0 (unlimited) or at least 2", maximum: Int(Int32.max)) {
            $0 == 0 || $0 >= 2
        },
        Knob(.advisorTargetScanTime, \.advisorTargetScanTime, expected: "at least 1 (seconds)", maximum: unsigned) {
            $0 >= 1
        },
        Knob(.advisorMaxCPU, \.advisorMaxCPU, 1...100, expected: "1 to 100 (percent of one core)"),
        Knob(.advisorMinPagesToScan, \.advisorMinPagesToScan, expected: "at least 1", maximum: unsigned) { $0 >= 1 },
        Knob(.advisorMaxPagesToScan, \.advisorMaxPagesToScan, expected: "at least 1", maximum: unsigned) { $0 >= 1 },
    ]
    private static let unsigned = Int(UInt32.max)

    /// Throws ``TunableError`` naming the first knob out of its own range (in the order of
    /// ``integerKnobs``), then checks the knobs that bound each other.
    public func validate() throws(TunableError) {
        for knob in Self.integerKnobs {
            try Self.checkRange(of: knob.key, self[keyPath: knob.keyPath])
        }
        try checkAdvisorBounds()
    }

    /// Checks the knobs that bound each other: `advisor_max_pages_to_scan` at least
    /// `advisor_min_pages_to_scan`.
    public func checkAdvisorBounds() throws(TunableError) {
        guard advisorMaxPagesToScan >= advisorMinPagesToScan else {
            throw TunableError(
                .advisorMaxPagesToScan, value: advisorMaxPagesToScan,
                expected: "at least advisor_min_pages_to_scan (\(advisorMinPagesToScan))")
        }
    }

    /// Checks one integer knob against its own range, whatever the others are. Knobs that are
    /// not integers pass.
    public static func checkRange(of key: CodingKeys, _ value: Int) throws(TunableError) {
        if let expected = integerKnobs.knob(key)?.problem(with: value) {
            throw TunableError(key, value: value, expected: expected)
        }
    }

    /// Reads the wire form: the first five knobs required, the advisor's optional (missing
    /// ones take the kernel's defaults, so an older daemon's knobs read as the advisor off).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let kernel = Tunables()
        self.init(
            pagesToScan: try c.decode(Int.self, forKey: .pagesToScan),
            sleepMillisecs: try c.decode(Int.self, forKey: .sleepMillisecs),
            maxKernelPages: try c.decode(Int.self, forKey: .maxKernelPages),
            maxPageSharing: try c.decode(Int.self, forKey: .maxPageSharing),
            smartScan: try c.decode(Bool.self, forKey: .smartScan),
            advisorMode: try c.decodeIfPresent(AdvisorMode.self, forKey: .advisorMode) ?? kernel.advisorMode,
            advisorTargetScanTime: try c.decodeIfPresent(Int.self, forKey: .advisorTargetScanTime)
                ?? kernel.advisorTargetScanTime,
            advisorMaxCPU: try c.decodeIfPresent(Int.self, forKey: .advisorMaxCPU) ?? kernel.advisorMaxCPU,
            advisorMinPagesToScan: try c.decodeIfPresent(Int.self, forKey: .advisorMinPagesToScan)
                ?? kernel.advisorMinPagesToScan,
            advisorMaxPagesToScan: try c.decodeIfPresent(Int.self, forKey: .advisorMaxPagesToScan)
                ?? kernel.advisorMaxPagesToScan)
    }
}

/// A tunable set to a value it cannot take.
public struct TunableError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The tunable's kernel name (`pages_to_scan`).
    public var name: String
    public var value: Int
    public var expected: String
    public var description: String { "\(name) = \(value) is out of range: expected \(expected)" }
}

extension TunableError {
    /// `tunable` set to `value`, which is not `expected`.
    public init(_ tunable: Tunables.CodingKeys, value: Int, expected: String) {
        self.name = tunable.rawValue
        self.value = value
        self.expected = expected
    }
}

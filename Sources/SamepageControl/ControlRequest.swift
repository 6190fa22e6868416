import SamepageCore
import SamepageModel

/// The control protocol's constants. The wire format is described in
/// `docs/control-protocol.md`.
public enum ControlProtocol {
    /// The protocol version this module speaks; every message carries it as `"version"`.
    public static let version = 1
    /// The versions a server accepts in requests.
    public static let supportedVersions = [1]
    /// The longest request line a server reads, newline excluded (1 MiB).
    public static let maximumRequestLength = 1 << 20
}

/// The name of a control command, as sent in a request's `"command"`.
public enum ControlCommand: String, Sendable, Hashable, Codable, CaseIterable {
    case list
    case dominfo
    case stats
    case run
    case tune
    case ksmTune = "ksm.tune"
    case policyShow = "policy.show"
    case policyReload = "policy.reload"
    case sharing
    case version
}

/// Changes to the scanner's knobs asked by a `tune` request: each one nil or the new value.
///
/// `pages_to_scan` is the scan-time advisor's while it is on: a request may set it only
/// together with `advisor_mode = "none"`, or while the advisor is off. Turning the advisor on
/// starts it afresh from `advisor_min_pages_to_scan`; turning it off sets `pages_to_scan` to
/// the one given, else to samepaged's default (the kernel's `set_advisor_defaults`).
public struct TunableChanges: Sendable, Equatable {
    /// Pages visited per batch (`pages_to_scan`): 1 or more.
    public var pagesToScan: Int?
    /// Pause between batches in milliseconds (`sleep_millisecs`): 0 or more.
    public var sleepMillisecs: Int?
    /// Cap on stable nodes (`max_kernel_pages`): 0 (unlimited) or more.
    public var maxKernelPages: Int?
    /// Cap on pages sharing one stable node (`max_page_sharing`): 0 (unlimited) or at least 2.
    public var maxPageSharing: Int?
    /// Smart scan on or off (`smart_scan`).
    public var smartScan: Bool?
    /// Who sets `pages_to_scan` (`advisor_mode`): `"none"` or `"scan-time"`.
    public var advisorMode: AdvisorMode?
    /// The advisor's target full-scan time in seconds (`advisor_target_scan_time`): 1 or more.
    public var advisorTargetScanTime: Int?
    /// The advisor's CPU cap in percent of one core (`advisor_max_cpu`): 1 to 100.
    public var advisorMaxCPU: Int?
    /// Where the advisor starts (`advisor_min_pages_to_scan`): 1 or more.
    public var advisorMinPagesToScan: Int?
    /// The advisor's cap on `pages_to_scan` (`advisor_max_pages_to_scan`): at least
    /// `advisor_min_pages_to_scan`.
    public var advisorMaxPagesToScan: Int?

    /// The changes; each knob left out (nil) stays as it is.
    public init(
        pagesToScan: Int? = nil, sleepMillisecs: Int? = nil, maxKernelPages: Int? = nil,
        maxPageSharing: Int? = nil, smartScan: Bool? = nil, advisorMode: AdvisorMode? = nil,
        advisorTargetScanTime: Int? = nil, advisorMaxCPU: Int? = nil, advisorMinPagesToScan: Int? = nil,
        advisorMaxPagesToScan: Int? = nil
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

    /// The integer changes, each with its knob, in the order of ``Tunables/integerKnobs``.
    var integers: [(Tunables.CodingKeys, Int?)] {
        [
            (.pagesToScan, pagesToScan), (.sleepMillisecs, sleepMillisecs), (.maxKernelPages, maxKernelPages),
            (.maxPageSharing, maxPageSharing), (.advisorTargetScanTime, advisorTargetScanTime),
            (.advisorMaxCPU, advisorMaxCPU), (.advisorMinPagesToScan, advisorMinPagesToScan),
            (.advisorMaxPagesToScan, advisorMaxPagesToScan),
        ]
    }

    /// Whether no knob is changed.
    public var isEmpty: Bool {
        integers.allSatisfy { $0.1 == nil } && smartScan == nil && advisorMode == nil
    }

    /// `tunables` (the knobs in force) with these changes made, and checked as a whole.
    ///
    /// Throws an `invalid_argument` failure for `pages_to_scan` while the advisor is or stays
    /// on, and for knobs that do not fit together (`advisor_max_pages_to_scan` below
    /// `advisor_min_pages_to_scan`).
    ///
    /// - Parameter pagesToScanWhenOff: `pages_to_scan` when this turns the advisor off and
    ///   gives none.
    public func applied(
        to tunables: Tunables, pagesToScanWhenOff: Int = Tunables.daemonPagesToScan
    ) throws(ControlFailure) -> Tunables {
        let mode = advisorMode ?? tunables.advisorMode
        if mode == .scanTime, pagesToScan != nil {
            throw ControlFailure(.invalidArgument, Self.pagesToScanFollowsAdvisor)
        }
        var result = tunables
        for (knob, value) in integers {
            guard let value, let keyPath = Tunables.integerKnobs.first(where: { $0.0 == knob })?.1 else { continue }
            result[keyPath: keyPath] = value
        }
        if let smartScan { result.smartScan = smartScan }
        // The mode last: turning the advisor on starts it from the new advisor_min_pages_to_scan.
        result.setAdvisorMode(mode, pagesToScanWhenOff: pagesToScan ?? pagesToScanWhenOff)
        do {
            try result.validate()
        } catch {
            throw ControlFailure(.invalidArgument, error.description)
        }
        return result
    }

    /// Why a request may not set `pages_to_scan` while the advisor is on.
    static let pagesToScanFollowsAdvisor =
        "pages_to_scan follows the scan-time advisor while advisor_mode = \"scan-time\": send advisor_mode = \"none\" "
        + "with it to set it by hand (samepage tune --advisor-mode none --pages-to-scan N)"

    /// Checks each given value against its own range: the engine's
    /// (``Tunables/checkRange(of:_:)``) and the kernel's types (`pages_to_scan`,
    /// `sleep_millisecs` and `advisor_max_cpu` are unsigned ints, `max_page_sharing` an int;
    /// the advisor's page counts bound `pages_to_scan`, so they are held to its type too),
    /// and refuses `pages_to_scan` with `advisor_mode = "scan-time"`. Throws an
    /// `invalid_argument` failure naming the tunable. What depends on the knobs in force is
    /// checked by ``applied(to:pagesToScanWhenOff:)``.
    public func validate() throws(ControlFailure) {
        if advisorMode == .scanTime, pagesToScan != nil {
            throw ControlFailure(.invalidArgument, Self.pagesToScanFollowsAdvisor)
        }
        let unsigned = Int(UInt32.max)
        let maximum: [Tunables.CodingKeys: Int] = [
            .pagesToScan: unsigned, .sleepMillisecs: unsigned, .maxPageSharing: Int(Int32.max),
            .advisorTargetScanTime: unsigned, .advisorMinPagesToScan: unsigned, .advisorMaxPagesToScan: unsigned,
        ]
        for (knob, value) in integers {
            guard let value else { continue }
            do {
                try Tunables.checkRange(of: knob, value)
            } catch {
                throw ControlFailure(.invalidArgument, error.description)
            }
            if let limit = maximum[knob], value > limit {
                throw ControlFailure(
                    .invalidArgument, TunableError(knob, value: value, expected: "at most \(limit)").description)
            }
        }
    }
}

/// A control request: a command and its typed arguments.
public enum ControlRequest: Sendable, Equatable {
    /// Every guest the daemon knows, with its counters.
    case list
    /// One guest, by name or UUID.
    case dominfo(guest: String)
    /// The global counters, run mode and tunables.
    case stats
    /// Sets the run mode: stop, merge or unmerge.
    case run(RunMode)
    /// Changes some tunables, live.
    case tune(TunableChanges)
    /// Changes to ksmd's settings while samepaged governs it; answered with the kernel's KSM
    /// as it is after the change.
    case ksmTune(KernelKSMChanges)
    /// The policy in force for one guest (by name or UUID) or, with nil, for every guest.
    case policyShow(guest: String?)
    /// Re-reads the policy directory.
    case policyReload
    /// The matrix of stable nodes shared between each pair of guests.
    case sharing
    /// The protocol and daemon versions.
    case version

    /// The request's command name.
    public var command: ControlCommand {
        switch self {
        case .list: .list
        case .dominfo: .dominfo
        case .stats: .stats
        case .run: .run
        case .tune: .tune
        case .ksmTune: .ksmTune
        case .policyShow: .policyShow
        case .policyReload: .policyReload
        case .sharing: .sharing
        case .version: .version
        }
    }
}

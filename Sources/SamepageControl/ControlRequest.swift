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
    case advise
}

/// Changes to the scanner's knobs asked by a `tune` request: each knob absent or its new
/// value. The integer knobs are keyed by ``Tunables/CodingKeys`` and ranged by
/// ``Tunables/integerKnobs``: a request's are checked there once, as it is read
/// (``validate()``).
///
/// `pages_to_scan` is the scan-time advisor's while it is on: a request may set it only
/// together with `advisor_mode = "none"`, or while the advisor is off. Turning the advisor on
/// starts it afresh from `advisor_min_pages_to_scan`; turning it off sets `pages_to_scan` to
/// the one given, else to samepaged's default (the kernel's `set_advisor_defaults`).
public struct TunableChanges: Sendable, Equatable, AdvisedChanges {
    /// The integer knobs changed, each to its new value.
    public var integers: [Tunables.CodingKeys: Int]
    /// Smart scan on or off (`smart_scan`).
    public var smartScan: Bool?
    /// Who sets `pages_to_scan` (`advisor_mode`): `"none"` or `"scan-time"`.
    public var advisorMode: AdvisorMode?

    /// The changes; each knob left out (nil) stays as it is.
    public init(
        pagesToScan: Int? = nil, sleepMillisecs: Int? = nil, maxKernelPages: Int? = nil,
        maxPageSharing: Int? = nil, smartScan: Bool? = nil, advisorMode: AdvisorMode? = nil,
        advisorTargetScanTime: Int? = nil, advisorMaxCPU: Int? = nil, advisorMinPagesToScan: Int? = nil,
        advisorMaxPagesToScan: Int? = nil
    ) {
        let given: [Tunables.CodingKeys: Int?] = [
            .pagesToScan: pagesToScan, .sleepMillisecs: sleepMillisecs, .maxKernelPages: maxKernelPages,
            .maxPageSharing: maxPageSharing, .advisorTargetScanTime: advisorTargetScanTime,
            .advisorMaxCPU: advisorMaxCPU, .advisorMinPagesToScan: advisorMinPagesToScan,
            .advisorMaxPagesToScan: advisorMaxPagesToScan,
        ]
        self.init(integers: given.compactMapValues { $0 }, smartScan: smartScan, advisorMode: advisorMode)
    }

    /// The changes to the integer knobs in `integers` and to the others.
    public init(integers: [Tunables.CodingKeys: Int], smartScan: Bool? = nil, advisorMode: AdvisorMode? = nil) {
        self.integers = integers
        self.smartScan = smartScan
        self.advisorMode = advisorMode
    }

    /// The new `pages_to_scan`, if any.
    public var pagesToScan: Int? { integers[.pagesToScan] }

    /// Whether no knob is changed.
    public var isEmpty: Bool {
        integers.isEmpty && smartScan == nil && advisorMode == nil
    }

    /// `tunables` (the knobs in force) with these changes made, and checked where the knobs
    /// bound each other.
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
        try checkPagesToScan(under: mode)
        var result = Tunables.integerKnobs.applying(integers, to: tunables)
        if let smartScan { result.smartScan = smartScan }
        // The mode last: turning the advisor on starts it from the new advisor_min_pages_to_scan.
        result.setAdvisorMode(mode, pagesToScanWhenOff: pagesToScan ?? pagesToScanWhenOff)
        do {
            // Each value's own range was checked as the request was read (``validate()``).
            try result.checkAdvisorBounds()
        } catch {
            throw ControlFailure(.invalidArgument, error.description)
        }
        return result
    }

    /// Why a request may not set `pages_to_scan` while the advisor is on.
    static let pagesToScanFollowsAdvisor =
        "pages_to_scan follows the scan-time advisor while advisor_mode = \"scan-time\": send advisor_mode = \"none\" "
        + "with it to set it by hand (samepage tune --advisor-mode none --pages-to-scan N)"

    /// Checks each given value against its own range (``Tunables/integerKnobs``: the engine's,
    /// and the kernel's types above it), and refuses `pages_to_scan` with
    /// `advisor_mode = "scan-time"`. Throws an `invalid_argument` failure naming the tunable.
    /// What depends on the knobs in force is checked by ``applied(to:pagesToScanWhenOff:)``.
    public func validate() throws(ControlFailure) {
        try checkPagesToScan(under: advisorMode)
        do {
            for knob in Tunables.integerKnobs {
                if let value = integers[knob.key] { try Tunables.checkRange(of: knob.key, value) }
            }
        } catch {
            throw ControlFailure(.invalidArgument, error.description)
        }
    }
}

/// What `tune` and `ksm.tune` share: `pages_to_scan` belongs to a scan-time advisor while
/// it is on, and a change may set it only while the advisor is (or is turned) off.
protocol AdvisedChanges {
    /// The new `pages_to_scan`, if any.
    var pagesToScan: Int? { get }
    /// Why `pages_to_scan` may not be set under the advisor, in this request's words.
    static var pagesToScanFollowsAdvisor: String { get }
}

extension AdvisedChanges {
    /// Refuses `pages_to_scan` when `mode` (the advisor's mode once the changes are made) is
    /// scan-time: an `invalid_argument` failure.
    func checkPagesToScan(under mode: AdvisorMode?) throws(ControlFailure) {
        if mode == .scanTime, pagesToScan != nil {
            throw ControlFailure(.invalidArgument, Self.pagesToScanFollowsAdvisor)
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
    /// What each policy mode would free now, per guest: one guest (by name or UUID) or, with
    /// nil, every guest.
    case advise(guest: String?)

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
        case .advise: .advise
        }
    }
}

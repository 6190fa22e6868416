import SamepageCore

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
    case policyShow = "policy.show"
    case policyReload = "policy.reload"
    case sharing
    case version
}

/// Changes to the scanner's knobs asked by a `tune` request: each one nil or the new value.
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

    public init(
        pagesToScan: Int? = nil, sleepMillisecs: Int? = nil, maxKernelPages: Int? = nil,
        maxPageSharing: Int? = nil, smartScan: Bool? = nil
    ) {
        self.pagesToScan = pagesToScan
        self.sleepMillisecs = sleepMillisecs
        self.maxKernelPages = maxKernelPages
        self.maxPageSharing = maxPageSharing
        self.smartScan = smartScan
    }

    /// Whether no knob is changed.
    public var isEmpty: Bool {
        pagesToScan == nil && sleepMillisecs == nil && maxKernelPages == nil && maxPageSharing == nil
            && smartScan == nil
    }

    /// `tunables` with these changes made.
    public func applied(to tunables: Tunables) -> Tunables {
        var result = tunables
        if let pagesToScan { result.pagesToScan = pagesToScan }
        if let sleepMillisecs { result.sleepMillisecs = sleepMillisecs }
        if let maxKernelPages { result.maxKernelPages = maxKernelPages }
        if let maxPageSharing { result.maxPageSharing = maxPageSharing }
        if let smartScan { result.smartScan = smartScan }
        return result
    }

    /// Checks each given value against its range: the engine's (``Tunables/validate()``) and
    /// the kernel's types (`pages_to_scan` and `sleep_millisecs` are unsigned ints,
    /// `max_page_sharing` an int). Throws an `invalid_argument` failure naming the tunable.
    public func validate() throws(ControlFailure) {
        let limits: [(Tunables.CodingKeys, Int?, Int)] = [
            (.pagesToScan, pagesToScan, Int(UInt32.max)),
            (.sleepMillisecs, sleepMillisecs, Int(UInt32.max)),
            (.maxPageSharing, maxPageSharing, Int(Int32.max)),
        ]
        do {
            try applied(to: Tunables()).validate()
        } catch {
            throw ControlFailure(.invalidArgument, error.description)
        }
        for (tunable, value, maximum) in limits {
            if let value, value > maximum {
                throw ControlFailure(
                    .invalidArgument, TunableError(tunable, value: value, expected: "at most \(maximum)").description)
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
        case .policyShow: .policyShow
        case .policyReload: .policyReload
        case .sharing: .sharing
        case .version: .version
        }
    }
}

import SamepageCore
import SamepageModel

/// A stable, machine-readable error code of a failed request (`"error": {"code": ...}`).
///
/// Open-ended: a client decodes codes it does not know (from a newer daemon) as they are.
public struct ControlErrorCode: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    /// The line is not a valid request: not JSON, not an object, a required field missing or
    /// of the wrong type.
    public static let badRequest = Self("bad_request")
    /// `"command"` names no command this daemon knows.
    public static let unknownCommand = Self("unknown_command")
    /// No guest has that name or UUID.
    public static let unknownGuest = Self("unknown_guest")
    /// An argument has the right type but a value out of range; the message names it.
    public static let invalidArgument = Self("invalid_argument")
    /// The request's `"version"` is not one the daemon speaks; the error lists those it does.
    public static let unsupportedVersion = Self("unsupported_version")
    /// The peer's credentials do not allow it to use the socket; the connection is closed.
    public static let permissionDenied = Self("permission_denied")
    /// The request line is longer than 1 MiB; the connection is closed.
    public static let requestTooLarge = Self("request_too_large")
    /// The daemon serves too many connections already; the connection is closed.
    public static let busy = Self("busy")
    /// The daemon cannot do this now (e.g. not connected to libvirt, no policy directory).
    public static let unavailable = Self("unavailable")
    /// The daemon failed; the message says how.
    public static let `internal` = Self("internal")
}

/// A request that failed: a stable code and a message for humans.
public struct ControlFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: ControlErrorCode
    public var message: String
    /// For `unsupported_version`: the versions the daemon speaks.
    public var supportedVersions: [Int]?

    public init(_ code: ControlErrorCode, _ message: String, supportedVersions: [Int]? = nil) {
        self.code = code
        self.message = message
        self.supportedVersions = supportedVersions
    }

    public var description: String { "\(message) (\(code))" }
}

/// The answer to a request: a result or a failure.
public enum ControlResponse: Sendable, Equatable {
    case success(ControlResult)
    case failure(ControlFailure)

    /// A failure response.
    public static func failure(_ code: ControlErrorCode, _ message: String) -> Self {
        .failure(ControlFailure(code, message))
    }

    /// The result, or the failure thrown.
    public func get() throws(ControlFailure) -> ControlResult {
        switch self {
        case .success(let result): return result
        case .failure(let failure): throw failure
        }
    }
}

/// The result of a successful request; which case answers which command is fixed
/// (``command``).
public enum ControlResult: Sendable, Equatable {
    /// `list`: every guest.
    case guests([GuestStatus])
    /// `dominfo`: one guest.
    case guest(GuestStatus)
    /// `stats`: global counters, run mode, tunables.
    case stats(DaemonStats)
    /// `run`: the run mode now in force.
    case run(RunMode)
    /// `tune`: all tunables as they are after the change.
    case tunables(Tunables)
    /// `ksm.tune`: the kernel's KSM after the change, with the `[kernel_ksm]` settings in force.
    case kernelKSM(KernelKSMStatus)
    /// `policy.show`: the policy of each guest asked for.
    case policies([GuestPolicyInfo])
    /// `policy.reload`: what went wrong reading the policy files, if anything.
    case policyReload(PolicyReloadReport)
    /// `sharing`: stable nodes shared between each pair of guests (the agent's matrix:
    /// `pages[i][j]` counts the nodes with members in both guest i and guest j; the
    /// diagonal, a guest's own nodes).
    case sharing(SharingMatrix)
    /// `version`: protocol and daemon versions.
    case version(VersionInfo)
    /// `advise`: what each mode would free now, per guest asked for.
    case advice([GuestAdvice])

    /// The command this result answers.
    public var command: ControlCommand {
        switch self {
        case .guests: .list
        case .guest: .dominfo
        case .stats: .stats
        case .run: .run
        case .tunables: .tune
        case .kernelKSM: .ksmTune
        case .policies: .policyShow
        case .policyReload: .policyReload
        case .sharing: .sharing
        case .version: .version
        case .advice: .advise
        }
    }
}

// MARK: - Result values

extension VersionInfo {
    /// The versions of a daemon at `daemon`'s release speaking this module's protocol.
    public init(daemon: String) {
        self.init(protocolVersion: ControlProtocol.version, daemon: daemon)
    }
}

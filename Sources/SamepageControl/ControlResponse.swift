import SamepageAgent
import SamepageCore

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

    /// The command this result answers.
    public var command: ControlCommand {
        switch self {
        case .guests: .list
        case .guest: .dominfo
        case .stats: .stats
        case .run: .run
        case .tunables: .tune
        case .policies: .policyShow
        case .policyReload: .policyReload
        case .sharing: .sharing
        case .version: .version
        }
    }
}

// MARK: - Result values

/// The daemon's global state (`stats`).
public struct DaemonStats: Sendable, Equatable {
    /// The engine's global counters (the kernel's names on the wire).
    public var counters: Counters
    /// The run mode (`run`: 0, 1, 2 on the wire, as `/sys/kernel/mm/ksm/run`).
    public var run: RunMode
    public var tunables: Tunables
    /// Bytes of tracking memory the engine holds.
    public var trackingBytes: Int
    /// Pages scanned per second over the last 10 seconds.
    public var scanRate: Double
    /// Whether the libvirt connection is up.
    public var connected: Bool
    /// The last connection error, while disconnected.
    public var connectionError: String?
    /// Guests known, and how many of them are mapped.
    public var guests: Int
    public var guestsMapped: Int
    /// Reclaim over all guests.
    public var reclaim: ReclaimStatus

    public init(
        counters: Counters = Counters(), run: RunMode = .merge, tunables: Tunables = Tunables(),
        trackingBytes: Int = 0, scanRate: Double = 0, connected: Bool = false, connectionError: String? = nil,
        guests: Int = 0, guestsMapped: Int = 0, reclaim: ReclaimStatus = ReclaimStatus()
    ) {
        self.scanRate = scanRate
        self.counters = counters
        self.run = run
        self.tunables = tunables
        self.trackingBytes = trackingBytes
        self.connected = connected
        self.connectionError = connectionError
        self.guests = guests
        self.guestsMapped = guestsMapped
        self.reclaim = reclaim
    }

    /// The agent's snapshot, summed up.
    public init(_ snapshot: AgentSnapshot) {
        self.init(
            counters: snapshot.counters, run: snapshot.run, tunables: snapshot.tunables,
            trackingBytes: snapshot.trackingBytes, scanRate: snapshot.scanRate, connected: snapshot.connected,
            connectionError: snapshot.connectionError, guests: snapshot.guests.count,
            guestsMapped: snapshot.guests.count(where: \.mapped), reclaim: snapshot.reclaim)
    }
}

/// The policy in force for one guest (`policy.show`).
public struct GuestPolicyInfo: Sendable, Equatable {
    public var name: String
    /// nil for a policy file whose guest the daemon has not seen.
    public var uuid: String?
    /// The file it came from; nil for the built-in default.
    public var source: String?
    public var policy: GuestPolicy

    public init(name: String, uuid: String?, source: String?, policy: GuestPolicy) {
        self.name = name
        self.uuid = uuid
        self.source = source
        self.policy = policy
    }
}

/// The outcome of `policy.reload`: one `file:line: message` per problem; empty when every
/// file was good. Guests whose file was rejected keep their last good policy.
public struct PolicyReloadReport: Sendable, Equatable {
    public var errors: [String]

    public init(errors: [String] = []) { self.errors = errors }
}

/// Versions (`version`).
public struct VersionInfo: Sendable, Equatable {
    /// The protocol version the daemon speaks.
    public var protocolVersion: Int
    /// The daemon's release, `x.y` or `x.y.z`.
    public var daemon: String

    public init(protocolVersion: Int = ControlProtocol.version, daemon: String) {
        self.protocolVersion = protocolVersion
        self.daemon = daemon
    }
}

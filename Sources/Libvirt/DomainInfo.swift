import CLibvirt
import Foundation

/// A domain as listed by libvirt: identity and run state.
public struct DomainInfo: Sendable, Hashable {
    public var name: String
    public var uuid: UUID
    /// The running domain's id (as in `virsh list`), nil when the domain is not running.
    public var id: UInt32?
    public var state: DomainState
    /// Why the domain is paused, when `state` is `.paused`.
    public var pausedReason: PausedReason?

    public init(name: String, uuid: UUID, id: UInt32?, state: DomainState, pausedReason: PausedReason?) {
        self.name = name
        self.uuid = uuid
        self.id = id
        self.state = state
        self.pausedReason = pausedReason
    }
}

/// A domain's state (`virDomainState`).
public enum DomainState: Sendable, Hashable, CustomStringConvertible {
    case noState, running, blocked, paused, shuttingDown, shutoff, crashed, pmSuspended
    case unknown(Int32)

    init(rawValue: Int32) {
        switch UInt32(bitPattern: rawValue) {
        case VIR_DOMAIN_NOSTATE.rawValue: self = .noState
        case VIR_DOMAIN_RUNNING.rawValue: self = .running
        case VIR_DOMAIN_BLOCKED.rawValue: self = .blocked
        case VIR_DOMAIN_PAUSED.rawValue: self = .paused
        case VIR_DOMAIN_SHUTDOWN.rawValue: self = .shuttingDown
        case VIR_DOMAIN_SHUTOFF.rawValue: self = .shutoff
        case VIR_DOMAIN_CRASHED.rawValue: self = .crashed
        case VIR_DOMAIN_PMSUSPENDED.rawValue: self = .pmSuspended
        default: self = .unknown(rawValue)
        }
    }

    public var description: String {
        switch self {
        case .noState: "no state"
        case .running: "running"
        case .blocked: "blocked"
        case .paused: "paused"
        case .shuttingDown: "shutting down"
        case .shutoff: "shut off"
        case .crashed: "crashed"
        case .pmSuspended: "pmsuspended"
        case .unknown(let value): "unknown state \(value)"
        }
    }
}

/// Why a domain is paused (`virDomainPausedReason`).
public enum PausedReason: Sendable, Hashable, CustomStringConvertible {
    case unknown, user, migration, save, dump, ioError, watchdog, fromSnapshot, shuttingDown
    case snapshot, crashed, startingUp, postcopy, postcopyFailed, apiError
    case other(Int32)

    init(rawValue: Int32) {
        switch UInt32(bitPattern: rawValue) {
        case VIR_DOMAIN_PAUSED_UNKNOWN.rawValue: self = .unknown
        case VIR_DOMAIN_PAUSED_USER.rawValue: self = .user
        case VIR_DOMAIN_PAUSED_MIGRATION.rawValue: self = .migration
        case VIR_DOMAIN_PAUSED_SAVE.rawValue: self = .save
        case VIR_DOMAIN_PAUSED_DUMP.rawValue: self = .dump
        case VIR_DOMAIN_PAUSED_IOERROR.rawValue: self = .ioError
        case VIR_DOMAIN_PAUSED_WATCHDOG.rawValue: self = .watchdog
        case VIR_DOMAIN_PAUSED_FROM_SNAPSHOT.rawValue: self = .fromSnapshot
        case VIR_DOMAIN_PAUSED_SHUTTING_DOWN.rawValue: self = .shuttingDown
        case VIR_DOMAIN_PAUSED_SNAPSHOT.rawValue: self = .snapshot
        case VIR_DOMAIN_PAUSED_CRASHED.rawValue: self = .crashed
        case VIR_DOMAIN_PAUSED_STARTING_UP.rawValue: self = .startingUp
        case VIR_DOMAIN_PAUSED_POSTCOPY.rawValue: self = .postcopy
        case VIR_DOMAIN_PAUSED_POSTCOPY_FAILED.rawValue: self = .postcopyFailed
        case 14: self = .apiError  // VIR_DOMAIN_PAUSED_API_ERROR, which libvirt 9.0's headers do not name yet
        default: self = .other(rawValue)
        }
    }

    public var description: String {
        switch self {
        case .unknown: "unknown"
        case .user: "paused by a user"
        case .migration: "migration"
        case .save: "save"
        case .dump: "core dump"
        case .ioError: "I/O error"
        case .watchdog: "watchdog"
        case .fromSnapshot: "restored from a snapshot"
        case .shuttingDown: "shutting down"
        case .snapshot: "snapshot"
        case .crashed: "guest crashed"
        case .startingUp: "starting up"
        case .postcopy: "post-copy migration"
        case .postcopyFailed: "failed post-copy migration"
        case .apiError: "QEMU API error"
        case .other(let value): "reason \(value)"
        }
    }
}

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
        switch rawValue {
        case 0: self = .noState
        case 1: self = .running
        case 2: self = .blocked
        case 3: self = .paused
        case 4: self = .shuttingDown
        case 5: self = .shutoff
        case 6: self = .crashed
        case 7: self = .pmSuspended
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
        let known: [PausedReason] = [
            .unknown, .user, .migration, .save, .dump, .ioError, .watchdog, .fromSnapshot,
            .shuttingDown, .snapshot, .crashed, .startingUp, .postcopy, .postcopyFailed, .apiError,
        ]
        self = known.indices.contains(Int(rawValue)) ? known[Int(rawValue)] : .other(rawValue)
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

/// What `query-status` says of the guest: `{"running": true, "status": "running",
/// "singlestep": false}`.
public struct QMPRunState: Sendable, Hashable {
    /// Whether the vCPUs run. False in every status but `running` (and `debug`'s stepping).
    public var running: Bool
    /// Why the guest is in the state it is: paused by a client, by an I/O error, by a
    /// migration, …
    public var status: QMPRunStatus
    /// Whether the guest is single-stepped by the gdbstub; QEMU 8.1 deprecated the member and
    /// 9.0 removed it (nil then).
    public var singlestep: Bool?

    public init(running: Bool, status: QMPRunStatus, singlestep: Bool? = nil) {
        self.running = running
        self.status = status
        self.singlestep = singlestep
    }

    init(reply: QMPValue) throws(QMPReplyError) {
        let reader = try QMPReplyReader(reply, "the query-status reply")
        self.init(
            running: try reader.bool("running"), status: QMPRunStatus(rawValue: try reader.string("status")),
            singlestep: try reader.optionalBool("singlestep"))
    }
}

/// QAPI's `RunState`: why a guest runs or does not.
///
/// Only ``paused`` is a pause a client made (`stop`) and a client may end (`cont`): the
/// others are QEMU's own (a migration's ``finishMigrate``, an ``ioError`` that
/// `werror=stop` made, a ``guestPanicked`` guest) and are not to be resumed by a merging
/// agent. A status a newer QEMU adds arrives as ``other(_:)``.
public enum QMPRunStatus: Sendable, Hashable, RawRepresentable, CustomStringConvertible {
    /// The guest runs.
    case running
    /// Paused by a client's `stop`.
    case paused
    /// Started with `-S`, never run.
    case prelaunch
    /// Waiting for an incoming migration.
    case inmigrate
    /// An outgoing migration completed; the guest stays paused here.
    case postmigrate
    /// An outgoing migration's last phase, with the vCPUs stopped.
    case finishMigrate
    /// Loading a snapshot (`loadvm`).
    case restoreVM
    /// Saving a snapshot (`savevm`).
    case saveVM
    /// Suspended to RAM by the guest (ACPI S3).
    case suspended
    /// Paused by the watchdog's `pause` action.
    case watchdog
    /// Paused because the guest panicked (`-action panic=pause`).
    case guestPanicked
    /// Paused by a disk error (`werror=stop`, `rerror=stop`).
    case ioError
    /// The guest shut down and `-no-shutdown` kept QEMU.
    case shutdown
    /// QEMU stopped on an internal error (KVM's emulation failure, …).
    case internalError
    /// Part of COLO fault tolerance.
    case colo
    /// Stopped by the gdbstub.
    case debug
    /// A status this client does not know, as QEMU wrote it (``init(rawValue:)`` gives it
    /// only for a name not listed above; one that is listed equals its case).
    case other(String)

    /// The status QEMU writes as `rawValue`; ``other(_:)`` for one not listed here.
    public init(rawValue: String) {
        switch rawValue {
        case "running": self = .running
        case "paused": self = .paused
        case "prelaunch": self = .prelaunch
        case "inmigrate": self = .inmigrate
        case "postmigrate": self = .postmigrate
        case "finish-migrate": self = .finishMigrate
        case "restore-vm": self = .restoreVM
        case "save-vm": self = .saveVM
        case "suspended": self = .suspended
        case "watchdog": self = .watchdog
        case "guest-panicked": self = .guestPanicked
        case "io-error": self = .ioError
        case "shutdown": self = .shutdown
        case "internal-error": self = .internalError
        case "colo": self = .colo
        case "debug": self = .debug
        default: self = .other(rawValue)
        }
    }

    /// The status as QEMU writes it, such as `finish-migrate`.
    public var rawValue: String {
        switch self {
        case .running: "running"
        case .paused: "paused"
        case .prelaunch: "prelaunch"
        case .inmigrate: "inmigrate"
        case .postmigrate: "postmigrate"
        case .finishMigrate: "finish-migrate"
        case .restoreVM: "restore-vm"
        case .saveVM: "save-vm"
        case .suspended: "suspended"
        case .watchdog: "watchdog"
        case .guestPanicked: "guest-panicked"
        case .ioError: "io-error"
        case .shutdown: "shutdown"
        case .internalError: "internal-error"
        case .colo: "colo"
        case .debug: "debug"
        case .other(let name): name
        }
    }

    /// Equal when QEMU writes them alike: `.other("paused")` is `.paused`.
    public static func == (lhs: QMPRunStatus, rhs: QMPRunStatus) -> Bool { lhs.rawValue == rhs.rawValue }

    public func hash(into hasher: inout Hasher) { hasher.combine(rawValue) }

    public var description: String { rawValue }
}

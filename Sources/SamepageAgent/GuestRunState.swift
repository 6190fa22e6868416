import Foundation

/// Whether a guest runs, in the agent's words: what `list` and `--json` show of every guest,
/// and what reclaim asks before it pauses one ("is it running?").
///
/// Both sources of guests speak their own language: libvirt's `virDomainState` for its
/// domains (turned into this in `GuestRunState+Libvirt.swift`), QEMU's QAPI `RunState`
/// over QMP for the guests outside libvirt (in `QEMU/GuestRunState+QMP.swift`). Each is turned into this at its edge; nothing past the
/// edge knows which one a guest's state came from.
///
/// The ``description`` is the wire form (`GuestStatus.state`): it is libvirt's state as
/// `virsh` would name it, so the same state prints the same whichever source it came from.
enum GuestRunState: Sendable, Hashable, CustomStringConvertible {
    /// The vCPUs run (a vCPU blocked on a resource counts as running here only when the
    /// source says running; libvirt's `blocked` is ``blocked``).
    case running
    /// Stopped by someone (a client, a migration, an I/O error, …); RAM stays.
    case paused
    /// The guest suspended itself to RAM (ACPI S3).
    case pmSuspended
    /// Shutting down.
    case shuttingDown
    /// Off (QEMU may still run, as after a `shutdown` with `-no-shutdown`).
    case shutOff
    /// Crashed (a guest panic, an internal error of QEMU's).
    case crashed
    /// Waiting on a resource.
    case blocked
    /// The source has no state for it.
    case noState
    /// A state the agent has no word for, as its source names it.
    case other(String)

    var description: String {
        switch self {
        case .running: "running"
        case .paused: "paused"
        case .pmSuspended: "pmsuspended"
        case .shuttingDown: "shutting down"
        case .shutOff: "shut off"
        case .crashed: "crashed"
        case .blocked: "blocked"
        case .noState: "no state"
        case .other(let name): name
        }
    }
}

/// QEMU's `STOP` or `RESUME` of one guest, with QEMU's own timestamp: what the guest saw of a
/// pause (``PauseRecord``). libvirt's QEMU monitor events (libvirt's guests) and QMP's events
/// (the guests outside libvirt) are turned into this at their edges.
struct GuestMonitorEvent: Sendable, Hashable {
    enum Kind: Sendable, Hashable {
        /// QEMU's `STOP`: the vCPUs stopped.
        case stop
        /// QEMU's `RESUME`: they run again.
        case resume

        /// The kind of a QEMU event named `name`; nil for any event but `STOP` and `RESUME`.
        init?(qemuName name: String) {
            switch name {
            case "STOP": self = .stop
            case "RESUME": self = .resume
            default: return nil
            }
        }
    }

    var uuid: UUID
    var kind: Kind
    /// QEMU's timestamp: seconds since the epoch, by the host's wall clock.
    var timestamp: Double
}

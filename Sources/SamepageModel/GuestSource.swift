/// Where samepaged found a guest: libvirt's QEMU driver, or a QEMU process libvirt does not
/// manage (Proxmox VE's qemu-server, or any other: a hand-written unit, microvm.nix), reached
/// over its own QMP socket. On the wire (`source`) and in `list`, by these names.
public enum GuestSource: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    case libvirt
    case proxmox
    case qemu

    public var description: String { rawValue }
}

/// How samepaged finds and pauses QEMU guests that libvirt does not manage (`[qemu]`).
public struct QEMUGuestsConfiguration: Sendable, Equatable {
    /// Whether QEMU processes outside libvirt are followed at all (`enabled`, default true).
    /// A guest found so is only accounted or paused as its policy says (default `off`).
    public var enabled: Bool
    /// Where Proxmox VE's qemu-server keeps `VMID.pid` and `VMID.qmp`
    /// (`proxmox_run_directory`; `/run` is the same directory on Proxmox VE hosts).
    public var proxmoxRunDirectory: String
    /// Where Proxmox VE keeps `VMID.conf`, whose `lock:` line says that a backup, migration,
    /// snapshot or suspend is under way (`proxmox_config_directory`).
    public var proxmoxConfigDirectory: String
    /// How long a QMP connection, its greeting and each command may take (`qmp_timeout_ms`,
    /// 10 to 5000 milliseconds). A monitor that does not greet in time is busy with another
    /// client: samepaged defers and tries again later, never waits.
    public var qmpTimeout: Duration
    /// The users a QEMU outside libvirt may run as to be taken for a guest's hypervisor, besides
    /// root (`hypervisor_users`): Debian libvirt's `libvirt-qemu` by default. A process of
    /// another user, or whose executable or its directories others could write, is ignored.
    public var hypervisorUsers: [String] = ["root", "libvirt-qemu"]

    /// ``qmpTimeout`` in whole milliseconds, as the file writes it.
    public var qmpTimeoutMs: Int {
        get {
            let (seconds, attoseconds) = qmpTimeout.components
            return Int(seconds * 1000 + attoseconds / 1_000_000_000_000_000)
        }
        set { qmpTimeout = .milliseconds(newValue) }
    }

    /// The values `qmp_timeout_ms` may take, in milliseconds.
    public static let qmpTimeoutRange = 10...5000

    public init(
        enabled: Bool = true, proxmoxRunDirectory: String = "/var/run/qemu-server",
        proxmoxConfigDirectory: String = "/etc/pve/qemu-server", qmpTimeout: Duration = .milliseconds(200)
    ) {
        self.enabled = enabled
        self.proxmoxRunDirectory = proxmoxRunDirectory
        self.proxmoxConfigDirectory = proxmoxConfigDirectory
        self.qmpTimeout = qmpTimeout
    }
}

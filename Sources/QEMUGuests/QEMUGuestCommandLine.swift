import Foundation
import GuestMemory

/// Who started a QEMU that libvirt does not manage.
public enum QEMUGuestSource: Sendable, Hashable {
    /// Proxmox VE's qemu-server, with the guest's VMID (its config is
    /// `/etc/pve/qemu-server/VMID.conf`: ``ProxmoxVMConfig``).
    case proxmox(vmid: Int)
    /// Anyone else: a script, a test harness, a container runtime.
    case qemu
}

/// What Samepage reads from the command line of a QEMU that libvirt does not manage: the
/// guest's name and identity, its QMP monitors, its RAM backends, and what keeps its RAM
/// from being merged or reclaimed (locked memory, devices that DMA into it). Pure: made from
/// the arguments (`/proc/PID/cmdline`), nothing read.
///
/// libvirt writes every guest's command line the same way, and Samepage asks libvirt for the
/// rest. Here the command line is all there is, written by hand or by another manager, so
/// this reads both of QEMU's spellings of an option: QemuOpts (`socket,id=qmp,path=…`, with
/// `,,` for a comma and old flags such as `server,nowait`) and JSON (`{"qom-type":…}`), and
/// `--option` as well as `-option` (``QEMUOptions``).
///
/// Proxmox VE starts its guests as
///
///     /usr/bin/kvm -id 101 -name 'web,debug-threads=on' -no-shutdown
///       -chardev 'socket,id=qmp,path=/var/run/qemu-server/101.qmp,server=on,wait=off'
///       -mon 'chardev=qmp,mode=control'
///       -chardev 'socket,id=qmp-event,path=/var/run/qmeventd.sock,reconnect=5'
///       -mon 'chardev=qmp-event,mode=control'
///       -pidfile /var/run/qemu-server/101.pid -daemonize -smbios 'type=1,uuid=…' -m 2048
///       -object 'memory-backend-memfd,id=virtiofs-mem,size=2048M,share=on' …
///
/// which reads as name `web`, source `.proxmox(vmid: 101)`, one monitor
/// `.unixServer("/var/run/qemu-server/101.qmp")` (qmeventd's socket is Proxmox's event
/// listener, not a monitor of the guest), and one shared memfd backend.
public struct QEMUGuestCommandLine: Sendable, Hashable {
    /// `argv[0]`, as written (`/usr/bin/kvm`; the binary it runs is `/proc/PID/exe`).
    public var program: String
    /// `-name NAME` or `-name guest=NAME,…`.
    public var name: String?
    /// `-uuid UUID` or `-smbios type=1,uuid=UUID`; the later one where both are given (QEMU
    /// sets its one UUID from either, in command-line order).
    public var uuid: UUID?
    /// `-pidfile PATH`.
    public var pidFile: String?
    public var source: QEMUGuestSource
    /// The QMP monitors (mode=control), in command-line order: `-qmp`, `-qmp-pretty`, and
    /// each `-mon chardev=ID,mode=control` with its `-chardev`. A `-mon` in the default mode
    /// (readline) is the human monitor, HMP, and is not one; nor is Proxmox's qmeventd
    /// socket (``QMPEndpoint/proxmoxEventSockets``).
    public var monitors: [QMPEndpoint]
    /// The `-object memory-backend-*` of the command line (``GuestMemory/QEMUCommandLine/memoryBackends(arguments:)``).
    public var memoryBackends: [MemoryBackendObject]
    /// `-m`, in bytes (a bare number is MiB, as QEMU reads it).
    public var ramSize: Int?
    /// `-mem-path DIR`: main RAM from a file in DIR (hugetlbfs, usually), without a backend object.
    public var memPath: String?
    /// `-mem-prealloc`: all of RAM is touched at start.
    public var memPrealloc: Bool
    /// `-overcommit mem-lock=on` (or `on-fault`), or `-realtime` with `mlock` on (QEMU's
    /// default for `-realtime`): QEMU `mlockall`s its memory, guest RAM included. Whoever
    /// started it asked for guest RAM to stay resident, which giving zero pages back to the
    /// host works against; what to do about it is the caller's policy.
    public var memoryLocked: Bool
    /// `-machine …,mem-merge=off`: guest RAM is not to be merged by the kernel's KSM (what
    /// libvirt's `<nosharepages/>` writes).
    public var memMergeOff: Bool
    /// The devices that reach guest RAM behind QEMU's back (``QEMUGuestDevice``).
    public var devices: [QEMUGuestDevice]
    /// The Unix sockets of its vhost-user devices (``GuestMemory/QEMUCommandLine/vhostUserSocketPaths(arguments:)``):
    /// the backends at their other end map guest RAM too.
    public var vhostUserSockets: Set<String>
    /// Its balloon device (``QEMUBalloon``); nil without one.
    public var balloon: QEMUBalloon?

    /// Reads a command line (`/proc/PID/cmdline`'s arguments, `argv[0]` first).
    ///
    /// - Parameter proxmoxRunDirectories: where qemu-server keeps pid files and QMP sockets
    ///   (``defaultProxmoxRunDirectories``; another one in tests).
    public init(arguments: [String], proxmoxRunDirectories: [String] = Self.defaultProxmoxRunDirectories) {
        let options = QEMUOptions(arguments: arguments)
        program = arguments.first ?? ""
        name = options.last("-name").flatMap { value in
            let properties = QEMUCommandLine.optsProperties(value)
            return properties["guest"] ?? properties[""]
        }
        uuid = Self.uuid(options)
        pidFile = options.last("-pidfile")
        monitors = Self.monitors(options)
        source = Self.proxmoxVMID(options, pidFile: pidFile, monitors: monitors, runDirectories: proxmoxRunDirectories)
            .map { .proxmox(vmid: $0) } ?? .qemu
        let normalized = options.normalizedArguments
        memoryBackends = QEMUCommandLine.memoryBackends(arguments: normalized)
        vhostUserSockets = QEMUCommandLine.vhostUserSocketPaths(arguments: normalized)
        ramSize = options.last("-m").flatMap { value in
            let properties = QEMUCommandLine.optsProperties(value)
            guard let size = properties["size"] ?? properties[""] else { return nil }
            return Int(size).map { $0 << 20 } ?? QEMUCommandLine.parseSize(size)
        }
        memPath = options.last("-mem-path")
        memPrealloc = options.flags.contains("-mem-prealloc")
        let overcommitLocks = options.values(of: "-overcommit").contains { value in
            QEMUCommandLine.optsProperties(value)["mem-lock"].map { $0 != "off" } ?? false
        }
        let realtimeLocks = options.values(of: "-realtime").contains { value in
            QEMUCommandLine.optsProperties(value)["mlock"].map { QEMUCommandLine.parseBool($0) ?? false } ?? true
        }
        memoryLocked = overcommitLocks || realtimeLocks
        devices = QEMUGuestDevice.devices(in: options)
        balloon = QEMUBalloon.find(in: options)
        memMergeOff = options.values(of: "-machine").contains { value in
            QEMUCommandLine.optsProperties(value)["mem-merge"].map { QEMUCommandLine.parseBool($0) == false } ?? false
        }
    }

    /// The key policies select this guest by (``QEMUGuestKey``): its UUID, else its Proxmox
    /// VMID, else its name; nil when it has none of them.
    public var key: QEMUGuestKey? {
        if let uuid { return .uuid(uuid) }
        if case .proxmox(let vmid) = source { return .proxmox(vmid: vmid) }
        return name.map { .name($0) }
    }

    /// The socket paths of the monitors Samepage can connect to (``QMPEndpoint/unixServer(_:)``).
    public var connectableMonitors: [String] { Self.serverPaths(monitors) }

    private static func serverPaths(_ monitors: [QMPEndpoint]) -> [String] {
        monitors.compactMap { if case .unixServer(let path) = $0 { path } else { nil } }
    }

    private static func uuid(_ options: QEMUOptions) -> UUID? {
        var uuid: UUID?
        for (option, value) in options.pairs {
            switch option {
            case "-uuid":
                uuid = UUID(uuidString: value) ?? uuid
            case "-smbios":
                let properties = QEMUCommandLine.optsProperties(value)
                if properties["type"] == "1", let text = properties["uuid"] { uuid = UUID(uuidString: text) ?? uuid }
            default:
                continue
            }
        }
        return uuid
    }

    private static func monitors(_ options: QEMUOptions) -> [QMPEndpoint] {
        // QEMU creates every chardev before any monitor, so a -mon may name a later -chardev.
        var chardevs: [String: QMPEndpoint] = [:]
        for value in options.values(of: "-chardev") {
            if value.hasPrefix("{") {
                guard let object = try? JSONSerialization.jsonObject(with: Data(value.utf8)) as? [String: Any],
                      let (id, endpoint) = QMPEndpoint.jsonChardev(object)
                else { continue }
                chardevs[id] = endpoint
            } else {
                let properties = QEMUCommandLine.optsProperties(value)
                guard let id = properties["id"] else { continue }
                chardevs[id] = QMPEndpoint(chardevOpts: properties) ?? .other(properties[""] ?? value)
            }
        }
        var monitors: [QMPEndpoint] = []
        for (option, value) in options.pairs {
            switch option {
            case "-qmp", "-qmp-pretty":
                if value.hasPrefix("chardev:") {
                    monitors.append(chardevs[String(value.dropFirst(8))] ?? .other(value))
                } else {
                    monitors.append(QMPEndpoint(legacyChardev: value))
                }
            case "-mon":
                let properties = value.hasPrefix("{") ? QEMUCommandLine.flatJSONProperties(value) : QEMUCommandLine.optsProperties(value)
                guard properties["mode"] == "control", let id = properties["chardev"] ?? properties[""] else { continue }
                monitors.append(chardevs[id] ?? .other("chardev:\(id)"))
            default:
                continue
            }
        }
        return monitors.filter { endpoint in
            if case .unixClient(let path) = endpoint { !QMPEndpoint.proxmoxEventSockets.contains(path) } else { true }
        }
    }

    /// The directories qemu-server keeps a guest's pid file and QMP socket in (`/var/run` is
    /// a link to `/run` on Proxmox VE hosts; either is written).
    public static let defaultProxmoxRunDirectories = ["/var/run/qemu-server", "/run/qemu-server"]

    /// A Proxmox VE guest's VMID: `-id VMID` (an option of Proxmox's own QEMU build), borne
    /// out by a pid file or QMP socket `VMID.pid` / `VMID.qmp` in qemu-server's run
    /// directory; or, for a QEMU without `-id` (upstream QEMU started as qemu-server starts
    /// it), both the pid file and the QMP socket there under one VMID. One path alone is not
    /// enough: a script may borrow the directory, and another QEMU build may know `-id`.
    private static func proxmoxVMID(
        _ options: QEMUOptions, pidFile: String?, monitors: [QMPEndpoint], runDirectories: [String]
    ) -> Int? {
        let directories = runDirectories.map { $0.hasSuffix("/") ? $0 : $0 + "/" }
        func vmid(of path: String, suffix: String) -> Int? {
            guard let directory = directories.first(where: path.hasPrefix), path.hasSuffix(suffix) else { return nil }
            let stem = path.dropFirst(directory.count).dropLast(suffix.count)
            return stem.allSatisfy(\.isNumber) ? Int(stem).flatMap { $0 > 0 ? $0 : nil } : nil
        }
        let fromPidFile = pidFile.flatMap { vmid(of: $0, suffix: ".pid") }
        let fromSockets = serverPaths(monitors).compactMap { vmid(of: $0, suffix: ".qmp") }
        if let id = options.last("-id").flatMap({ Int($0) }), id > 0 {
            return fromPidFile == id || fromSockets.contains(id) ? id : nil
        }
        guard let id = fromPidFile, fromSockets.contains(id) else { return nil }
        return id
    }
}

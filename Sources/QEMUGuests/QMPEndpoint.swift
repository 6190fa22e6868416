import GuestMemory

/// Where a QEMU's QMP monitor (a monitor in `mode=control`) can be reached, as its command
/// line declares it.
///
/// Only ``unixServer(_:)`` is a socket Samepage can connect to. The others are accounted
/// for so that a report can say why a guest cannot be asked anything: its monitor was handed
/// to QEMU as a descriptor (``descriptor(_:)``: Kata Containers, libvirt, anything that
/// creates the socket itself and keeps the other end), QEMU connects out to someone else's
/// socket (``unixClient(_:)``), or it listens on TCP (``tcp(_:)``, which Samepage does not
/// use: anyone on the network could send commands there).
///
/// A QEMU chardev server takes one client at a time: while one is connected, the next waits
/// unanswered. A manager such as Proxmox's `qm` connects to its guest's QMP socket for every
/// command, so whoever connects to a ``unixServer(_:)`` must ask and disconnect, never hold
/// the connection open.
public enum QMPEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// A Unix socket QEMU listens on (`server=on`): connectable.
    case unixServer(String)
    /// A descriptor QEMU was started with (`fd=N`): the socket is someone else's; nothing to
    /// connect to, reported only.
    case descriptor(Int32)
    /// A Unix socket QEMU connects to (a socket chardev without `server=on`): the listener
    /// is someone else's, reported only.
    case unixClient(String)
    /// A TCP socket (`host:port`), client or server: not used.
    case tcp(String)
    /// Any other chardev backend (`stdio`, `pty`, `pipe:…`, a chardev not on the command
    /// line), as written.
    case other(String)

    /// Whether Samepage can connect to it.
    public var isConnectable: Bool {
        if case .unixServer = self { true } else { false }
    }

    public var description: String {
        switch self {
        case .unixServer(let path): "unix:\(path) (server)"
        case .descriptor(let fd): "fd=\(fd)"
        case .unixClient(let path): "unix:\(path) (QEMU connects out)"
        case .tcp(let address): "tcp:\(address)"
        case .other(let text): text
        }
    }

    /// Proxmox VE's event daemon, which every Proxmox guest connects to as a client for
    /// shutdown events: a control monitor on the command line, but qmeventd's, not the
    /// guest's, so not counted as one of its monitors.
    static let proxmoxEventSockets: Set<String> = ["/var/run/qmeventd.sock", "/run/qmeventd.sock"]
}

extension QMPEndpoint {
    /// The endpoint of a `-chardev` in QemuOpts form (`socket,id=ID,path=…,server=on`), or
    /// nil for a chardev of any other backend than a socket. The server flag defaults to off
    /// (QEMU connects out), as QEMU's does.
    init?(chardevOpts properties: [String: String]) {
        guard properties[""] ?? properties["backend"] == "socket" else { return nil }
        let server = properties["server"].flatMap(QEMUCommandLine.parseBool) ?? false
        self.init(socket: properties, server: server)
    }

    /// The endpoint of the legacy chardev syntax of `-qmp` and `-qmp-pretty`:
    /// `unix:PATH[,server=on][,wait=off]` (older: `,server,nowait`), `unix:fd=N`,
    /// `tcp:HOST:PORT[,…]`, or another backend (`stdio`, `pipe:…`), which is ``other(_:)``.
    /// `chardev:ID` names a `-chardev` and is resolved by the caller.
    init(legacyChardev text: String) {
        if text.hasPrefix("unix:") {
            // QEMU reads the rest as QemuOpts whose implied first key is the path.
            let properties = QEMUCommandLine.optsProperties(String(text.dropFirst(5)))
            let server = properties["server"].flatMap(QEMUCommandLine.parseBool) ?? false
            var socket = properties
            socket["path"] = properties[""]
            self.init(socket: socket, server: server)
        } else if text.hasPrefix("tcp:") {
            self = .tcp(QEMUCommandLine.optsProperties(String(text.dropFirst(4)))[""] ?? "")
        } else {
            self = .other(text)
        }
    }

    /// From the members of a socket chardev: a descriptor, a Unix path, or a TCP address.
    private init(socket properties: [String: String], server: Bool) {
        if let fd = properties["fd"], let number = Int32(fd) {
            self = .descriptor(number)
        } else if let path = properties["path"], !path.isEmpty {
            self = server ? .unixServer(path) : .unixClient(path)
        } else if let host = properties["host"] {
            self = .tcp("\(host):\(properties["port"] ?? "")")
        } else {
            self = .other("socket")
        }
    }

    /// The id and endpoint of a `-chardev` in QMP's `chardev-add` shape, which libvirt writes
    /// (`{"id":…,"backend":{"type":"socket","data":{"addr":{"type":"unix","data":{"path":…}},
    /// "server":true}}}`). The QMP form's `server` defaults to true, unlike QemuOpts'.
    static func jsonChardev(_ object: [String: Any]) -> (id: String, endpoint: QMPEndpoint)? {
        guard let id = object["id"] as? String, let backend = object["backend"] as? [String: Any],
              let type = backend["type"] as? String
        else { return nil }
        guard type == "socket", let data = backend["data"] as? [String: Any],
              let address = data["addr"] as? [String: Any], let addressData = address["data"] as? [String: Any]
        else { return (id, .other(type)) }
        let server = data["server"] as? Bool ?? true
        switch address["type"] as? String {
        case "unix":
            guard let path = addressData["path"] as? String else { return (id, .other("socket")) }
            return (id, server ? .unixServer(path) : .unixClient(path))
        case "fd":
            guard let text = addressData["str"] as? String, let fd = Int32(text) else { return (id, .other("socket")) }
            return (id, .descriptor(fd))
        case "inet":
            return (id, .tcp("\(addressData["host"] as? String ?? ""):\(addressData["port"] as? String ?? "")"))
        default:
            return (id, .other("socket"))
        }
    }
}

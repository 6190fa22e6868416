import Glibc

/// Tells systemd where the daemon is in its life (`sd_notify(3)`'s protocol, without
/// libsystemd): `READY=1` once it serves, `RELOADING=1` (with `MONOTONIC_USEC`) while SIGHUP
/// re-reads its files and `READY=1` after, `STOPPING=1` when it begins to stop. With
/// `Type=notify` systemd then knows when samepaged serves, and ordering (`After=`) waits for it.
///
/// The socket is `$NOTIFY_SOCKET`: a path, or an abstract name when it starts with `@`. Without
/// it (not run by systemd, or another `Type=`), every call does nothing. A datagram that
/// cannot be sent is dropped: the service manager's view is not worth failing the daemon.
struct ServiceManagerNotifier: Sendable {
    private let address: [UInt8]?

    init(environment: [String: String]) {
        guard let socket = environment["NOTIFY_SOCKET"], !socket.isEmpty, socket.utf8.count < 108,
              socket.hasPrefix("/") || socket.hasPrefix("@")
        else {
            address = nil
            return
        }
        var bytes = Array(socket.utf8)
        if bytes[0] == UInt8(ascii: "@") { bytes[0] = 0 }  // the abstract namespace
        address = bytes
    }

    /// Whether a service manager asked to be told.
    var isActive: Bool { address != nil }

    func ready(status: String) { send("READY=1\nSTATUS=\(status)") }

    func reloading() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let microseconds = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
        send("RELOADING=1\nMONOTONIC_USEC=\(microseconds)\nSTATUS=reloading the configuration and the policies")
    }

    func stopping() { send("STOPPING=1\nSTATUS=stopping: ending pauses, releasing guests") }

    private func send(_ message: String) {
        guard let address else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var unixAddress = sockaddr_un()
        unixAddress.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &unixAddress.sun_path) { path in
            for (i, byte) in address.enumerated() { path[i] = byte }
        }
        // For an abstract name the length counts exactly its bytes; for a path, the NUL too.
        let length = MemoryLayout<sa_family_t>.size + address.count + (address.first == 0 ? 0 : 1)
        let bytes = Array(message.utf8)
        _ = withUnsafePointer(to: &unixAddress) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sockaddrPointer in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sockaddrPointer, socklen_t(length)) }
            }
        }
    }
}

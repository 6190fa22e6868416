import Foundation
import Glibc
import Testing

/// A datagram socket standing in for systemd's notify socket.
private final class NotifySocket {
    let path: String
    let fd: Int32

    init(directory: String) throws {
        path = "\(directory)/notify.sock"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestHost.ScriptFailed(description: "socket: errno \(errno)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { bytes in
            for (i, byte) in path.utf8.enumerated() { bytes[i] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { throw TestHost.ScriptFailed(description: "bind \(path): errno \(errno)") }
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// The next message, or nil after 20 s without one.
    func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(fd, &buffer, buffer.count, 0)
        return count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : nil
    }

    deinit { close(fd) }
}

@Suite("End to end: samepaged and the service manager", .serialized)
struct ServiceManagerEndToEndTests {
    @Test("samepaged tells the notify socket READY when it serves, RELOADING then READY on SIGHUP, STOPPING on SIGTERM")
    func notifies() throws {
        let daemon = try DaemonProcess(config: daemonConfig)
        let notify = try NotifySocket(directory: daemon.directory)
        setenv("NOTIFY_SOCKET", notify.path, 1)
        defer { unsetenv("NOTIFY_SOCKET") }
        try daemon.start()
        unsetenv("NOTIFY_SOCKET")

        let ready = try #require(notify.receive(), "no READY:\n\(daemon.log)")
        #expect(ready.split(separator: "\n").contains("READY=1"), "\(ready)")
        // Ready means serving: the control socket answers.
        #expect(try daemon.cli("stats").status == 0)

        kill(daemon.pid, SIGHUP)
        let reloading = try #require(notify.receive())
        let fields = reloading.split(separator: "\n")
        #expect(fields.contains("RELOADING=1"), "\(reloading)")
        let stamp = fields.first { $0.hasPrefix("MONOTONIC_USEC=") }.flatMap { UInt64($0.dropFirst("MONOTONIC_USEC=".count)) }
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let nowMicros = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
        #expect(stamp.map { $0 <= nowMicros && nowMicros - $0 < 20_000_000 } == true, "\(reloading)")
        let readyAgain = try #require(notify.receive())
        #expect(readyAgain.split(separator: "\n").contains("READY=1"), "\(readyAgain)")

        #expect(daemon.stop() == 0)
        let stopping = try #require(notify.receive())
        #expect(stopping.split(separator: "\n").contains("STOPPING=1"), "\(stopping)")
    }
}

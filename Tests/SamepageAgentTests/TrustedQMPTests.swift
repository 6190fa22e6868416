import Foundation
import Glibc
import LinuxSystem
import QMP
@testable import SamepageAgent
import Testing

/// The agent's one way to a QMP socket: refused sockets are never connected to, and a refused
/// listener is sent nothing.
@Suite("Trusted QMP connections", .serialized) struct TrustedQMPTests {
    /// A directory of its own under /tmp (mode 0700), removed by the caller.
    private func directory() throws -> String {
        var template = Array("/tmp/samepage-trustedqmp-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw SystemError("mkdtemp") }
        return String(cString: template)
    }

    private func listen(at path: String) throws -> UnixSocket {
        let socket = try UnixSocket.stream()
        let bound = try UnixSocketAddress(path: path).withSockaddr { bind(socket.descriptor.rawValue, $0, $1) }
        #expect(bound == 0)
        #expect(Glibc.listen(socket.descriptor.rawValue, 4) == 0)
        return socket
    }

    /// Whether a client waits in the listener's backlog.
    private func hasPendingClient(_ listener: borrowing UnixSocket) -> Bool {
        var descriptor = pollfd(fd: listener.descriptor.rawValue, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) == 1
    }

    @Test("a socket in a directory others may write is never connected to")
    func openDirectory() throws {
        let root = try directory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        #expect(mkdir("\(root)/shared", 0o777) == 0)
        #expect(chmod("\(root)/shared", 0o777) == 0)
        let listener = try listen(at: "\(root)/shared/qmp.sock")
        let error = #expect(throws: QMPError.self) {
            _ = try TrustedQMP.connect(socket: "\(root)/shared/qmp.sock", pid: getpid(), uid: getuid(), timeout: .milliseconds(500))
        }
        guard case .untrustedPeer(_, let why)? = error else { Issue.record("not refused: \(String(describing: error))"); return }
        #expect(why == "\(root)/shared, above its QMP socket, is writable by others (mode 777)")
        let pending = hasPendingClient(listener)
        #expect(!pending)
        listener.close()
    }

    @Test("a listener that is neither the QEMU nor its uid is sent nothing")
    func foreignListener() throws {
        let root = try directory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let path = "\(root)/qmp.sock"
        let listener = try listen(at: path)
        let qemuUID = getuid() &+ 4242
        let error = #expect(throws: QMPError.self) {
            _ = try TrustedQMP.connect(socket: path, pid: 1, uid: qemuUID, timeout: .milliseconds(500))
        }
        #expect(error == .untrustedPeer(
            path: path, detail: "its QMP socket \(path) is served by pid \(getpid()) (uid \(getuid())), not its QEMU 1 or its uid \(qemuUID)"))
        // It connected (to learn who listens) and hung up without a byte.
        let accepted = accept(listener.descriptor.rawValue, nil, nil)
        #expect(accepted >= 0)
        var byte: UInt8 = 0
        #expect(recv(accepted, &byte, 1, 0) == 0)
        close(accepted)
        listener.close()
    }

    @Test("no socket is no server, not an untrusted one")
    func missing() throws {
        let root = try directory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let error = #expect(throws: QMPError.self) {
            _ = try TrustedQMP.connect(socket: "\(root)/gone.sock", pid: 1, uid: 0, timeout: .milliseconds(200))
        }
        #expect(error == .noServer(path: "\(root)/gone.sock", errno: .noSuchFileOrDirectory))
    }
}

import Foundation
import Glibc
import LinuxSystem
import SamepageCore
import Testing
@testable import SamepageControl

@Suite("Control access: read group and admin group") struct ControlAccessTests {
    /// Daemon run as root; read group 100 (users), admin group 27 (sudo on Debian).
    private let access = ControlAccess(readGroup: 100, adminGroup: 27, ownUID: 0)

    @Test("root and the daemon's own uid are admins; groups by primary or supplementary membership")
    func roles() {
        #expect(access.role(uid: 0, gid: 0, groups: { [] }) == .admin)
        #expect(ControlAccess(ownUID: 1000).role(uid: 1000, gid: 1000, groups: { [] }) == .admin)
        #expect(access.role(uid: 1000, gid: 27, groups: { [] }) == .admin)
        #expect(access.role(uid: 1000, gid: 1000, groups: { [27] }) == .admin)
        // In both groups: the admin group wins.
        #expect(access.role(uid: 1000, gid: 100, groups: { [27] }) == .admin)
        #expect(access.role(uid: 1000, gid: 100, groups: { [] }) == .read)
        #expect(access.role(uid: 1000, gid: 1000, groups: { [100] }) == .read)
        #expect(access.role(uid: 1000, gid: 1000, groups: { [4, 24] }) == nil)
        // No groups configured: root only, and the peer's groups are never asked for.
        #expect(ControlAccess(ownUID: 0).role(uid: 1000, gid: 100, groups: { Issue.record("groups read"); return [100] }) == nil)
    }

    @Test("what changes samepaged needs admin; reads do not")
    func commands() {
        #expect(ControlCommand.allCases.filter(\.needsAdmin) == [.run, .tune, .ksmTune, .policyReload])
        for command in ControlCommand.allCases where !command.needsAdmin {
            #expect(access.refusal(of: command, to: .read, uid: 1000) == nil)
        }
        for command in ControlCommand.allCases {
            #expect(access.refusal(of: command, to: .admin, uid: 1000) == nil)
        }
    }

    @Test("a read-only peer is told which group it needs")
    func refusalMessage() {
        let refusal = ControlAccess(readGroup: 100, adminGroup: 4242, ownUID: 0).refusal(of: .tune, to: .read, uid: 1000)
        #expect(refusal == ControlFailure(
            .permissionDenied, "`tune` needs the admin group gid 4242 (control.admin_group); uid 1000 may only read"))
        let rootOnly = ControlAccess(readGroup: 100, ownUID: 0).refusal(of: .run, to: .read, uid: 1000)
        #expect(rootOnly?.message == "`run` needs root (no control.admin_group is configured); uid 1000 may only read")
    }

    @Test("the socket file's group: the read group, else the admin group")
    func socketGroup() {
        #expect(access.socketGroup == 100)
        #expect(ControlAccess(adminGroup: 27, ownUID: 0).socketGroup == 27)
        #expect(ControlAccess(ownUID: 0).socketGroup == nil)
    }
}

@Suite("Control socket deadlines") struct ControlDeadlineTests {
    @Test("bytes trickling in never extend a request's deadline")
    func trickleIsCut() throws {
        let directory = TemporaryDirectory()
        var limits = ControlServer.Limits()
        limits.idleTimeout = .milliseconds(600)
        let server = try ControlServer(path: directory.file("ctl.sock"), limits: limits, handler: FakeDaemon()).start()
        defer { server.stop() }
        let connection = try RawConnection(path: server.path, timeout: .seconds(5))
        let start = ContinuousClock.now
        // One byte every 100 ms, never a newline: an idle timer reset by each byte would never fire.
        var closed = false
        for _ in 0..<40 {
            if connection.send([UInt8(ascii: " ")]) != nil { closed = true; break }
            usleep(100_000)
        }
        #expect(closed || connection.isClosed())
        #expect(ContinuousClock.now - start < .seconds(3))
    }

    @Test("an answer then a new deadline: a peer that keeps asking in time is served")
    func requestsInTimeAreServed() throws {
        let directory = TemporaryDirectory()
        var limits = ControlServer.Limits()
        limits.idleTimeout = .milliseconds(500)
        let server = try ControlServer(path: directory.file("ctl.sock"), limits: limits, handler: FakeDaemon()).start()
        defer { server.stop() }
        let connection = try RawConnection(path: server.path, timeout: .seconds(5))
        for id in 1...4 {
            usleep(300_000)
            connection.send(#"{"version":1,"id":\#(id),"command":"version"}"# + "\n")
            #expect(connection.readObject()?["id"] as? Int == id)
        }
    }
}

@Suite(
    "Control access as other users", .serialized,
    .enabled(if: getuid() == 0, "runs clients as other users with setpriv, which needs root"))
struct ControlAccessUserTests {
    /// Sends each of `commands` (a bare command name) on one connection as `user`; the
    /// response lines.
    private func run(_ commands: [String], socket: String, asUser user: [String]) throws -> [[String: Any]] {
        let requests = commands.enumerated().map { #"{"version":1,"id":\#($0.offset + 1),"command":"\#($0.element)"}"# }
        let script = """
            import socket, sys
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(sys.argv[1])
            f = s.makefile("rb")
            for line in sys.argv[2:]:
                try:
                    s.sendall(line.encode() + b"\\n")
                except OSError:
                    pass
                reply = f.readline().decode().strip()
                if not reply:
                    break
                print(reply)
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = user + ["/usr/bin/python3", "-c", script, socket] + requests
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
    }

    @Test("a read-group member reads and is refused changes; an admin-group member changes")
    func readAndAdmin() throws {
        let directory = TemporaryDirectory(mode: 0o755)
        let users: gid_t = 100
        let admins: gid_t = 4242
        let server = try ControlServer(
            path: directory.file("ctl.sock"), mode: 0o666, group: users, adminGroup: admins, handler: FakeDaemon()
        ).start()
        defer { server.stop() }

        let reader = try run(["version", "policy.reload", "list"], socket: server.path, asUser: ["--reuid=nobody", "--regid=nogroup", "--groups=\(users)"])
        #expect(reader.count == 3)
        #expect(reader.first?["ok"] as? Bool == true)
        #expect(errorCode(reader.dropFirst().first) == "permission_denied")
        #expect(((reader.dropFirst().first?["error"] as? [String: Any])?["message"] as? String)?.contains("`policy.reload` needs the admin group") == true)
        // The connection stays open after a refusal.
        #expect(reader.last?["ok"] as? Bool == true)

        let admin = try run(["policy.reload"], socket: server.path, asUser: ["--reuid=nobody", "--regid=nogroup", "--groups=\(admins)"])
        #expect(admin.first?["ok"] as? Bool == true, "\(admin)")

        let stranger = try run(["version"], socket: server.path, asUser: ["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        #expect(errorCode(stranger.first) == "permission_denied")
    }

    /// Opens `count` connections as `user`, all held, then asks `version` on each: each reply's
    /// `ok` or error code.
    private func hold(_ count: Int, socket: String, asUser user: [String]) throws -> [String] {
        let script = """
            import socket, sys, json
            held = []
            for _ in range(int(sys.argv[2])):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(10)
                s.connect(sys.argv[1])
                held.append(s)
            for s in held:
                try:
                    s.sendall(b'{"version":1,"id":1,"command":"version"}\\n')
                except OSError:
                    pass
                reply = json.loads(s.makefile("rb").readline().decode() or "{}")
                print("ok" if reply.get("ok") else reply.get("error", {}).get("code", "none"))
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = user + ["/usr/bin/python3", "-c", script, socket, "\(count)"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    @Test("one user holds at most its share of the connections, and root keeps some of its own")
    func connectionsPerUser() throws {
        let directory = TemporaryDirectory(mode: 0o755)
        let nogroup: gid_t = 65534
        var limits = ControlServer.Limits()
        limits.maximumConnections = 4
        limits.maximumConnectionsPerUser = 2
        limits.reservedForRoot = 1
        let server = try ControlServer(path: directory.file("ctl.sock"), mode: 0o666, group: nogroup, limits: limits, handler: FakeDaemon()).start()
        defer { server.stop() }
        let nobody = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        #expect(try hold(3, socket: server.path, asUser: nobody) == ["ok", "ok", "busy"])

        var reserve = ControlServer.Limits()
        reserve.maximumConnections = 2
        reserve.reservedForRoot = 1
        let tight = try ControlServer(path: directory.file("tight.sock"), mode: 0o666, group: nogroup, limits: reserve, handler: FakeDaemon()).start()
        defer { tight.stop() }
        #expect(try hold(2, socket: tight.path, asUser: nobody) == ["ok", "busy"])
        // Root is never held to a user's share, nor kept out of its reserve (once nobody's
        // connections, closed at its exit, are let go).
        usleep(300_000)
        #expect(try hold(2, socket: tight.path, asUser: ["--reuid=root", "--regid=root", "--clear-groups"]) == ["ok", "ok"])
    }
}

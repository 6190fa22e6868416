import Glibc
import LinuxSystem
import Foundation
import SamepageCore
import SamepageModel
import Synchronization
import Testing
@testable import SamepageControl

private func fileMode(_ path: String) -> mode_t? {
    var status = stat()
    guard lstat(path, &status) == 0 else { return nil }
    return status.st_mode
}

private func exists(_ path: String) -> Bool { fileMode(path) != nil }

/// A socket file nobody listens on: what a crashed daemon leaves behind.
private func makeStaleSocket(at path: String) throws {
    let socket = try UnixSocket.controlStream()
    let bound = try UnixSocketAddress(path: path).withSockaddr { bind(socket.descriptor.rawValue, $0, $1) }
    #expect(bound == 0)
    socket.close()
}

@Suite("Control server and client", .serialized) struct ServerTests {
    @Test("every command round-trips through the socket on one connection")
    func roundTrips() throws {
        let directory = TemporaryDirectory()
        let daemon = FakeDaemon()
        let server = try ControlServer(path: directory.file("ctl.sock"), handler: daemon).start()
        defer { server.stop() }
        let client = try ControlClient(path: server.path, timeout: .seconds(10))
        for request in everyRequest {
            let result = try client.call(request)
            #expect(result.command == request.command)
            #expect(try daemon.handle(request, from: ControlPeer(pid: 0, uid: 0, gid: 0)).get() == result || request.command == .tune)
        }
        #expect(try client.call(.list) == .guests([Sample.alpha, Sample.beta]))
        #expect(try client.call(.dominfo(guest: Sample.beta.uuid)) == .guest(Sample.beta))
        #expect(try client.call(.stats) == .stats(Sample.stats))
        #expect(try client.call(.run(.stop)) == .run(.stop))
        guard case .tunables(let tunables) = try client.call(.tune(TunableChanges(pagesToScan: 64, maxPageSharing: 0))) else {
            Issue.record("tune gave no tunables"); return
        }
        #expect(tunables.pagesToScan == 64)
        #expect(tunables.maxPageSharing == 0)
        #expect(try client.call(.policyShow(guest: "alpha")) == .policies([Sample.policies[0]]))
        #expect(try client.call(.policyReload) == .policyReload(Sample.reload))
        #expect(try client.call(.sharing) == .sharing(Sample.sharing))
        #expect(try client.call(.version) == .version(VersionInfo(protocolVersion: 1, daemon: "0.1")))
        // A failure from the handler is a response, not a broken connection.
        #expect(try client.send(.dominfo(guest: "nosuch")) == .failure(.unknownGuest, "no guest named nosuch"))
        #expect(throws: ControlError.failed(ControlFailure(.unknownGuest, "no guest named nosuch"))) {
            try client.call(.dominfo(guest: "nosuch"))
        }
        #expect(try client.call(.version) == .version(VersionInfo(daemon: "0.1")))
        // An invalid tune never reaches the handler.
        let before = daemon.requests.withLock { $0.count }
        guard case .failure(let failure) = try client.send(.tune(TunableChanges(pagesToScan: 0))) else {
            Issue.record("pages_to_scan 0 accepted"); return
        }
        #expect(failure.code == .invalidArgument)
        #expect(failure.message.contains("pages_to_scan"))
        #expect(daemon.requests.withLock { $0.count } == before)
    }

    @Test("the socket is owner-only by default and takes the mode asked for")
    func socketMode() throws {
        let directory = TemporaryDirectory()
        let server = try ControlServer(path: directory.file("ctl.sock"), handler: FakeDaemon()).start()
        #expect(fileMode(server.path).map { $0 & S_IFMT } == S_IFSOCK)
        #expect(fileMode(server.path).map { $0 & 0o7777 } == 0o600)
        server.stop()
        guard getuid() == 0 else { return }  // giving the socket to another group needs root
        let open = try ControlServer(path: directory.file("other.sock"), mode: 0o660, group: 100, handler: FakeDaemon()).start()
        defer { open.stop() }
        #expect(fileMode(open.path).map { $0 & 0o7777 } == 0o660)
        var status = stat()
        lstat(open.path, &status)
        #expect(status.st_gid == 100)
    }

    @Test("the parent directory is created with mode 0755")
    func parentDirectory() throws {
        let directory = TemporaryDirectory()
        let server = try ControlServer(path: directory.file("run/samepage/ctl.sock"), handler: FakeDaemon()).start()
        defer { server.stop() }
        #expect(fileMode(directory.file("run/samepage")).map { $0 & 0o7777 } == 0o755)
        #expect(fileMode(directory.file("run")).map { $0 & 0o7777 } == 0o755)
        #expect(try ControlClient(path: server.path).call(.version) == .version(VersionInfo(daemon: "0.1")))
    }

    @Test("malformed JSON, unknown command and wrong version get errors; the connection stays usable")
    func badLines() throws {
        let directory = TemporaryDirectory()
        let server = try ControlServer(path: directory.file("ctl.sock"), handler: FakeDaemon()).start()
        defer { server.stop() }
        let connection = try RawConnection(path: server.path)

        connection.send("this is not json\n")
        var reply = connection.readObject()
        #expect(reply?["version"] as? Int == 1)
        #expect(reply?["ok"] as? Bool == false)
        #expect(reply?["id"] is NSNull)
        #expect(errorCode(reply) == "bad_request")

        connection.send(#"{"version":1,"id":11,"command":"defragment"}"# + "\n")
        reply = connection.readObject()
        #expect(reply?["id"] as? Int == 11)
        #expect(errorCode(reply) == "unknown_command")

        connection.send(#"{"version":7,"id":12,"command":"list"}"# + "\n")
        reply = connection.readObject()
        #expect(reply?["id"] as? Int == 12)
        #expect(errorCode(reply) == "unsupported_version")
        #expect(((reply?["error"] as? [String: Any])?["message"] as? String)?.contains("version 1") == true)

        connection.send(#"{"version":1,"id":13,"command":"dominfo"}"# + "\n")
        #expect(errorCode(connection.readObject()) == "bad_request")

        // Blank lines are skipped; CRLF is accepted; two requests in one write get two answers.
        connection.send("\n  \n" + #"{"version":1,"id":14,"command":"version"}"# + "\r\n"
            + #"{"version":1,"id":15,"command":"run","mode":"merge"}"# + "\n")
        reply = connection.readObject()
        #expect(reply?["id"] as? Int == 14)
        #expect((reply?["result"] as? [String: Any])?["daemon"] as? String == "0.1")
        reply = connection.readObject()
        #expect(reply?["id"] as? Int == 15)
        #expect((reply?["result"] as? [String: Any])?["run"] as? Int == 1)
    }

    @Test("a request line over 1 MiB gets request_too_large and the connection is closed")
    func oversizedLine() throws {
        let directory = TemporaryDirectory()
        let server = try ControlServer(path: directory.file("ctl.sock"), handler: FakeDaemon()).start()
        defer { server.stop() }
        let connection = try RawConnection(path: server.path)
        // Exactly at the limit is fine.
        let request = #"{"version":1,"id":1,"command":"version"}"#
        let atLimit = request + String(repeating: " ", count: ControlProtocol.maximumRequestLength - request.utf8.count)
        #expect(atLimit.utf8.count == ControlProtocol.maximumRequestLength)
        connection.send(atLimit + "\n")
        #expect(connection.readObject()?["ok"] as? Bool == true)

        connection.send(Array(repeating: UInt8(ascii: "x"), count: ControlProtocol.maximumRequestLength + 100_000))
        let reply = connection.readObject()
        #expect(errorCode(reply) == "request_too_large")
        #expect(connection.isClosed())
        // The server keeps serving others.
        #expect(try ControlClient(path: server.path).call(.version) == .version(VersionInfo(daemon: "0.1")))
    }

    @Test("a second server on the same socket is refused while the first runs, allowed after it stops")
    func secondServer() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("ctl.sock")
        let first = try ControlServer(path: path, handler: FakeDaemon()).start()
        #expect(throws: ControlError.alreadyRunning(path: path)) {
            _ = try ControlServer(path: path, handler: FakeDaemon()).start()
        }
        // The refused start left the first server's socket alone.
        #expect(try ControlClient(path: path).call(.version) == .version(VersionInfo(daemon: "0.1")))
        first.stop()
        #expect(!exists(path))
        let second = try ControlServer(path: path, handler: FakeDaemon()).start()
        defer { second.stop() }
        #expect(try ControlClient(path: path).call(.version) == .version(VersionInfo(daemon: "0.1")))
    }

    @Test("a stale socket is replaced; something that is not a socket is left alone")
    func staleSocket() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("ctl.sock")
        try makeStaleSocket(at: path)
        #expect(exists(path))
        let server = try ControlServer(path: path, handler: FakeDaemon()).start()
        #expect(try ControlClient(path: path).call(.version) == .version(VersionInfo(daemon: "0.1")))
        server.stop()

        let file = directory.file("plain")
        _ = FileManager.default.createFile(atPath: file, contents: Data("keep".utf8))
        #expect(throws: ControlError.notASocket(path: file)) {
            _ = try ControlServer(path: file, handler: FakeDaemon()).start()
        }
        #expect(FileManager.default.contents(atPath: file) == Data("keep".utf8))
    }

    @Test("servers starting at once on one path: exactly one wins")
    func racingStarts() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("ctl.sock")
        try makeStaleSocket(at: path)
        let outcomes = Mutex<[Result<ControlServer, ControlError>]>([])
        DispatchQueue.concurrentPerform(iterations: 6) { _ in
            let outcome = Result { () throws(ControlError) in try ControlServer(path: path, handler: FakeDaemon()).start() }
            outcomes.withLock { $0.append(outcome) }
        }
        let servers = outcomes.withLock { $0.compactMap { try? $0.get() } }
        #expect(servers.count == 1)
        #expect(try ControlClient(path: path).call(.version) == .version(VersionInfo(daemon: "0.1")))
        servers.forEach { $0.stop() }
        #expect(!exists(path))
    }

    @Test("client errors: no socket, stale socket, path too long")
    func clientErrors() throws {
        let directory = TemporaryDirectory()
        let missing = directory.file("none.sock")
        do {
            _ = try ControlClient(path: missing)
            Issue.record("connected to nothing")
        } catch {
            #expect(error == .daemonNotRunning(path: missing, errno: ENOENT))
            #expect(error.description == "samepaged is not running (no socket at \(missing))")
        }
        let stale = directory.file("stale.sock")
        try makeStaleSocket(at: stale)
        do {
            _ = try ControlClient(path: stale)
            Issue.record("connected to a stale socket")
        } catch {
            #expect(error == .daemonNotRunning(path: stale, errno: ECONNREFUSED))
            #expect(error.description == "connection refused at \(stale): is samepaged running?")
        }
        let long = "/tmp/" + String(repeating: "x", count: 200)
        #expect(throws: ControlError.pathTooLong(path: long)) { _ = try ControlClient(path: long) }
    }

    @Test("a client whose daemon stops gets connectionClosed")
    func daemonGoesAway() throws {
        let directory = TemporaryDirectory()
        let server = try ControlServer(path: directory.file("ctl.sock"), handler: FakeDaemon()).start()
        let client = try ControlClient(path: server.path, timeout: .seconds(5))
        #expect(try client.call(.version) == .version(VersionInfo(daemon: "0.1")))
        server.stop()
        #expect(throws: ControlError.connectionClosed(path: server.path)) { try client.call(.version) }
        #expect(throws: ControlError.connectionClosed(path: server.path)) { try client.call(.version) }
    }

    @Test("stop() closes idle connections promptly and removes the socket")
    func stopClosesEverything() throws {
        let directory = TemporaryDirectory()
        let server = try ControlServer(path: directory.file("ctl.sock"), handler: FakeDaemon()).start()
        let connections = try (0..<5).map { _ in try RawConnection(path: server.path) }
        connections[0].send(#"{"version":1,"id":1,"command":"version"}"# + "\n")
        #expect(connections[0].readObject()?["ok"] as? Bool == true)
        let start = ContinuousClock.now
        server.stop()
        #expect(ContinuousClock.now - start < .seconds(2))
        #expect(!exists(server.path))
        for connection in connections { #expect(connection.isClosed()) }
        server.stop()  // idempotent
    }

    @Test("stop() leaves a socket that is no longer its own")
    func stopSparesReplacedSocket() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("ctl.sock")
        let server = try ControlServer(path: path, handler: FakeDaemon()).start()
        unlink(path)
        try makeStaleSocket(at: path)
        server.stop()
        #expect(exists(path))
    }

    @Test("dropping the server stops it")
    func deinitStops() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("ctl.sock")
        var server: ControlServer? = try ControlServer(path: path, handler: FakeDaemon()).start()
        #expect(server != nil)
        server = nil
        #expect(!exists(path))
        #expect(throws: ControlError.self) { _ = try ControlClient(path: path) }
    }

    @Test("connections beyond the cap get busy")
    func connectionCap() throws {
        let directory = TemporaryDirectory()
        var limits = ControlServer.Limits()
        limits.maximumConnections = 2
        let server = try ControlServer(path: directory.file("ctl.sock"), limits: limits, handler: FakeDaemon()).start()
        defer { server.stop() }
        let held = try (0..<2).map { _ in try RawConnection(path: server.path) }
        for connection in held {
            connection.send(#"{"version":1,"id":1,"command":"version"}"# + "\n")
            #expect(connection.readObject()?["ok"] as? Bool == true)
        }
        let extra = try RawConnection(path: server.path)
        #expect(errorCode(extra.readObject()) == "busy")
        #expect(throws: ControlError.busy(path: server.path)) { try ControlClient(path: server.path).call(.version) }
        _ = held
    }

    @Test("an idle connection is closed after the idle timeout")
    func idleTimeout() throws {
        let directory = TemporaryDirectory()
        var limits = ControlServer.Limits()
        limits.idleTimeout = .milliseconds(300)
        let server = try ControlServer(path: directory.file("ctl.sock"), limits: limits, handler: FakeDaemon()).start()
        defer { server.stop() }
        let connection = try RawConnection(path: server.path, timeout: .seconds(5))
        let start = ContinuousClock.now
        #expect(connection.isClosed())
        #expect(ContinuousClock.now - start < .seconds(3))
    }

    @Test("a result of the wrong kind becomes an internal error")
    func mismatchedResult() throws {
        let directory = TemporaryDirectory()
        let server = try ControlServer(path: directory.file("ctl.sock")) { _ in .success(.run(.merge)) }.start()
        defer { server.stop() }
        let response = try ControlClient(path: server.path).send(.list)
        guard case .failure(let failure) = response else { Issue.record("accepted \(response)"); return }
        #expect(failure.code == .internal)
    }

    @Test("the handler sees the peer's credentials")
    func peerCredentials() throws {
        let directory = TemporaryDirectory()
        let peers = Mutex<[ControlPeer]>([])
        let server = try ControlServer(
            path: directory.file("ctl.sock"),
            handler: ControlHandlerClosure { _, peer in
                peers.withLock { $0.append(peer) }
                return .success(.version(VersionInfo(daemon: "0.1")))
            }).start()
        defer { server.stop() }
        _ = try ControlClient(path: server.path).call(.version)
        #expect(peers.withLock { $0 } == [ControlPeer(pid: getpid(), uid: getuid(), gid: getgid())])
    }
}

@Suite(
    "Peer credentials", .serialized,
    .enabled(if: getuid() == 0, "runs clients as other users with setpriv, which needs root"))
struct PermissionTests {
    static let nobody = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"]

    @Test("root is accepted; a non-root user is refused by the credential check")
    func nonRootRefused() throws {
        let directory = TemporaryDirectory(mode: 0o755)
        // 0666: the filesystem lets anyone connect, so only the credential check can refuse.
        let server = try ControlServer(path: directory.file("ctl.sock"), mode: 0o666, handler: FakeDaemon()).start()
        defer { server.stop() }

        let root = try runPythonClient(socket: server.path, asUser: ["--reuid=root", "--regid=root", "--clear-groups"])
        let accepted = try JSONSerialization.jsonObject(with: Data(root.utf8)) as? [String: Any]
        #expect(accepted?["ok"] as? Bool == true, "\(root)")
        #expect(accepted?["id"] as? Int == 7)

        let output = try runPythonClient(socket: server.path, asUser: Self.nobody)
        let refused = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
        #expect(refused?["ok"] as? Bool == false, "\(output)")
        #expect(refused?["version"] as? Int == 1)
        #expect(errorCode(refused) == "permission_denied")
        #expect(((refused?["error"] as? [String: Any])?["message"] as? String)?.contains("uid 65534") == true)
    }

    @Test("with the default mode 0600 the filesystem refuses non-root first")
    func filesystemRefuses() throws {
        let directory = TemporaryDirectory(mode: 0o755)
        let server = try ControlServer(path: directory.file("ctl.sock"), handler: FakeDaemon()).start()
        defer { server.stop() }
        let output = try runPythonClient(socket: server.path, asUser: Self.nobody)
        #expect(output == "ERROR \(EACCES)")
    }

    @Test("members of the configured group are accepted, by primary or supplementary group")
    func groupMembers() throws {
        let directory = TemporaryDirectory(mode: 0o755)
        let users: gid_t = 100
        let server = try ControlServer(path: directory.file("ctl.sock"), mode: 0o660, group: users, handler: FakeDaemon()).start()
        defer { server.stop() }
        for user in [
            ["--reuid=nobody", "--regid=\(users)", "--clear-groups"],
            ["--reuid=nobody", "--regid=nogroup", "--groups=\(users)"],
        ] {
            let output = try runPythonClient(socket: server.path, asUser: user)
            let reply = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
            #expect(reply?["ok"] as? Bool == true, "\(user): \(output)")
        }
        // Outside the group: the socket file (0660, group users) already refuses; with 0666 the
        // credential check does.
        let open = try ControlServer(path: directory.file("open.sock"), mode: 0o666, group: users, handler: FakeDaemon()).start()
        defer { open.stop() }
        let output = try runPythonClient(socket: open.path, asUser: Self.nobody)
        let reply = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
        #expect(errorCode(reply) == "permission_denied", "\(output)")
        #expect(((reply?["error"] as? [String: Any])?["message"] as? String)?.contains("users (gid 100)") == true)
    }

    @Test("a permission_denied response is thrown as permissionDenied by the client")
    func clientSeesDenial() throws {
        // A stand-in daemon that refuses everyone, as the real one refuses non-members.
        let directory = TemporaryDirectory()
        let path = directory.file("ctl.sock")
        let listener = try UnixSocket.controlStream()
        #expect(try UnixSocketAddress(path: path).withSockaddr { bind(listener.descriptor.rawValue, $0, $1) } == 0)
        #expect(listen(listener.descriptor.rawValue, 4) == 0)
        let fd = listener.descriptor.rawValue
        let thread = Thread {
            let connection = accept(fd, nil, nil)
            let socket = UnixSocket(taking: FileDescriptor(rawValue: connection))
            _ = socket.sendAll(
                ControlCodec.encode(.failure(.permissionDenied, "uid 1000 may not use samepaged's control socket"), id: nil))
        }
        thread.start()
        let client = try ControlClient(path: path, timeout: .seconds(5))
        #expect(throws: ControlError.permissionDenied(path: path, detail: "uid 1000 may not use samepaged's control socket")) {
            try client.call(.list)
        }
    }

    @Test("a client refused by the filesystem gets permissionDenied")
    func clientFilesystemDenial() throws {
        // Root bypasses file modes, so this only means something as another user; the mapping
        // of EACCES is checked through the error's message instead.
        let error = ControlError.permissionDenied(path: "/run/samepage/samepaged.sock", detail: "Permission denied")
        #expect(error.description == "permission denied on /run/samepage/samepaged.sock: Permission denied")
    }
}

@Suite("Hostile input") struct HostileInputTests {
    @Test("deep nesting, invalid UTF-8, NUL bytes and random bytes get bad_request; the server survives")
    func hostileLines() throws {
        let directory = TemporaryDirectory()
        let server = try ControlServer(path: directory.file("ctl.sock"), handler: FakeDaemon()).start()
        defer { server.stop() }
        let connection = try RawConnection(path: server.path)
        var generator = SystemRandomNumberGenerator()
        let lines: [[UInt8]] = [
            Array(repeating: UInt8(ascii: "["), count: 500_000),
            Array(#"{"version":1,"id":1,"command":"list","x":"#.utf8) + Array(repeating: UInt8(ascii: "{"), count: 100_000),
            Array(#"{"version":1,"id":1,"command":"dominfo","guest":""#.utf8) + [0xff, 0xfe] + Array(#""}"#.utf8),
            Array(#"{"version":1,"id":1,"command":"list"}"#.utf8) + [0],
            (0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) }.filter { $0 != UInt8(ascii: "\n") },
        ]
        for line in lines {
            connection.send(line + [UInt8(ascii: "\n")])
            #expect(errorCode(connection.readObject()) == "bad_request")
        }
        connection.send(#"{"version":1,"id":2,"command":"version"}"# + "\n")
        #expect(connection.readObject()?["ok"] as? Bool == true)
    }

    @Test("/proc fallback for supplementary groups checks that the pid still has the peer's uid")
    func procGroups() {
        let me = ControlPeer(pid: getpid(), uid: getuid(), gid: getgid())
        var groups = [gid_t](repeating: 0, count: 256)
        let count = getgroups(Int32(groups.count), &groups)
        #expect(Set(procStatusGroups(of: me)) == Set(groups.prefix(Int(max(count, 0)))))
        let impostor = ControlPeer(pid: getpid(), uid: getuid() &+ 1, gid: getgid())
        #expect(procStatusGroups(of: impostor).isEmpty)
    }
}

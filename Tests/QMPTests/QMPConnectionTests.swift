import Foundation
import Glibc
import QMP
import Testing

/// The client against a scripted fake QEMU (``FakeQMPServer``): the handshake, replies by id,
/// events in between, framing, and each way a monitor fails.
@Suite("QMP connection", .serialized) struct QMPConnectionTests {
    @Test("the greeting is read and capabilities negotiation is left with qmp_capabilities")
    func handshake() throws {
        let server = try FakeQMPServer(FakeQMPServer.handshake + [.awaitHangUp])
        do {
            let connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
            #expect(connection.greeting.version == QMPVersion(major: 8, minor: 1, micro: 5, package: "pve-qemu-kvm_8.1.5-6"))
            #expect(connection.greeting.capabilities == ["oob"])
            #expect(connection.greeting.version.isAtLeast(8, 0))
            #expect(!connection.greeting.version.isAtLeast(8, 2))
            #expect(connection.path == server.path)
        }
        let requests = server.requests()
        #expect(requests.map(\.execute) == ["qmp_capabilities"])
        #expect(requests.first?.id != nil)
    }

    @Test("a command's reply is its return value, matched by id")
    func commandReply() throws {
        let server = try FakeQMPServer(
            FakeQMPServer.handshake + [
                .answer { FakeQMPServer.reply(#""return": {"status": "running", "singlestep": false, "running": true}"#, to: $0) },
                .awaitHangUp,
            ])
        do {
            var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
            let reply = try connection.execute("query-status", timeout: .seconds(5))
            #expect(reply == .object(["status": .string("running"), "singlestep": .bool(false), "running": .bool(true)]))
        }
        let requests = server.requests()
        #expect(requests.map(\.execute) == ["qmp_capabilities", "query-status"])
        // Every command has an id of its own.
        #expect(Set(requests.compactMap(\.id)).count == 2)
    }

    @Test("arguments go out as JSON another parser reads back, strings escaped")
    func argumentsEscaped() throws {
        let tricky = "/machine/peripheral/\"odd\\name\"\n\t\u{01}é😀"
        let server = try FakeQMPServer(FakeQMPServer.handshake + [FakeQMPServer.returning("[]"), .awaitHangUp])
        do {
            var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
            #expect(try connection.qomList(path: tricky) == [])
        }
        let request = try #require(server.requests().last)
        #expect(request.execute == "qom-list")
        #expect(request.stringArguments == ["path": tricky])
        // One request a line: the newline inside the string is escaped.
        #expect(!request.line.contains("\n"))
    }

    @Test("an error reply is commandFailed with QEMU's class and description; the connection goes on")
    func errorReply() throws {
        let server = try FakeQMPServer(
            FakeQMPServer.handshake + [
                .answer { FakeQMPServer.reply(#""error": {"class": "CommandNotFound", "desc": "The command query-foo has not been found"}"#, to: $0) },
                FakeQMPServer.returning("{}"),
                .awaitHangUp,
            ])
        var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
        #expect(throws: QMPError.commandFailed(
            path: server.path, command: "query-foo", errorClass: "CommandNotFound",
            description: "The command query-foo has not been found")
        ) {
            try connection.execute("query-foo", timeout: .seconds(5))
        }
        try connection.cont(timeout: .seconds(5))
        connection.close()
        #expect(server.requests().map(\.execute) == ["qmp_capabilities", "query-foo", "cont"])
    }

    @Test("events before a reply are kept, in order, with QEMU's timestamps")
    func eventsBeforeReply() throws {
        let server = try FakeQMPServer(
            FakeQMPServer.handshake + [
                .answer {
                    #"{"timestamp": {"seconds": 1732104000, "microseconds": 123456}, "event": "STOP"}"# + "\r\n"
                        + #"{"timestamp": {"seconds": 1732104000, "microseconds": 130001}, "event": "BLOCK_IO_ERROR", "data": {"device": "drive-scsi0", "operation": "write", "action": "ignore"}}"# + "\r\n"
                        + FakeQMPServer.reply(#""return": {}"#, to: $0)
                },
                .awaitHangUp,
            ])
        var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
        try connection.stop(timeout: .seconds(5))
        #expect(connection.pendingEvents.count == 2)
        let events = connection.takeEvents()
        #expect(connection.pendingEvents.isEmpty)
        #expect(events.map(\.name) == ["STOP", "BLOCK_IO_ERROR"])
        #expect(events[0].timestamp == QMPTimestamp(seconds: 1_732_104_000, microseconds: 123_456))
        #expect(events[0].timestamp.sinceEpoch == .seconds(1_732_104_000) + .microseconds(123_456))
        #expect(abs(events[0].timestamp.secondsSinceEpoch - 1_732_104_000.123456) < 1e-6)
        #expect(events[0].data == .object([:]))
        #expect(events[1].data["device"] == "drive-scsi0")
        #expect(events[0].timestamp < events[1].timestamp)
        #expect(events[0].timestamp.description == "1732104000.123456")
    }

    @Test("readEvents waits for an event, and returns nothing at its deadline")
    func readEvents() throws {
        let server = try FakeQMPServer(
            FakeQMPServer.handshake + [
                .pause(.milliseconds(50)),
                .send(#"{"timestamp": {"seconds": 1732104001, "microseconds": 5}, "event": "RESUME"}"# + "\r\n"),
                .awaitHangUp,
            ])
        var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
        let events = try connection.readEvents(until: .now + .seconds(5))
        #expect(events.map(\.name) == ["RESUME"])
        #expect(events.first?.timestamp.description == "1732104001.000005")
        let start = ContinuousClock.now
        #expect(try connection.readEvents(until: .now + .milliseconds(100)).isEmpty)
        #expect(ContinuousClock.now - start >= .milliseconds(90))
    }

    @Test("a reply in pieces, and many messages in one write, are read whole and in order")
    func framing() throws {
        let server = try FakeQMPServer(
            FakeQMPServer.handshake + [
                .answer { request in
                    // Two events and the reply in one write, the reply for another id first.
                    #"{"return": {"stale": true}, "id": 999}"# + "\r\n"
                        + #"{"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 2}}"# + "\r\n"
                        + FakeQMPServer.reply(#""return": {"name": "vm100"}"#, to: request)
                },
                .answer { _ in nil },
                .send(#"{"return": {"UUID": "c1f7e6b2-"#),
                .pause(.milliseconds(20)),
                .send(#"4d3a-4f5e-9a8b-0c1d2e3f4a5b"}, "#),
                .pause(.milliseconds(20)),
                .send(#""id": 3}"# + "\r"),
                .pause(.milliseconds(20)),
                .send("\n"),
                .awaitHangUp,
            ])
        var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
        #expect(try connection.queryName(timeout: .seconds(5)) == "vm100")
        #expect(connection.takeEvents().map(\.name) == ["RESUME"])
        // The fake answers id 3 by the script: the third command this client sends.
        #expect(try connection.queryUUID(timeout: .seconds(5)) == "c1f7e6b2-4d3a-4f5e-9a8b-0c1d2e3f4a5b")
        connection.close()
        #expect(server.requests().map(\.id) == [1, 2, 3])
    }

    @Test("a late reply to a command that timed out is skipped by the next command")
    func lateReplySkipped() throws {
        let server = try FakeQMPServer(
            FakeQMPServer.handshake + [
                .answer { _ in nil },
                .pause(.milliseconds(300)),
                .send(#"{"return": {"running": false, "status": "paused"}, "id": 2}"# + "\r\n"),
                .answer { FakeQMPServer.reply(#""return": {"running": true, "status": "running"}"#, to: $0) },
                .awaitHangUp,
            ])
        var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
        #expect(throws: QMPError.timedOut(path: server.path, command: "query-status", timeout: .milliseconds(100))) {
            try connection.queryStatus(timeout: .milliseconds(100))
        }
        #expect(try connection.queryStatus(timeout: .seconds(5)) == QMPRunState(running: true, status: .running))
    }

    @Test("a monitor that accepts and never greets is busy within the timeout")
    func acceptedButSilent() throws {
        let server = try FakeQMPServer([.awaitHangUp])
        let start = ContinuousClock.now
        #expect(throws: QMPError.busy(path: server.path, timeout: .milliseconds(200))) {
            _ = try QMPConnection.connect(path: server.path, timeout: .milliseconds(200))
        }
        let elapsed = ContinuousClock.now - start
        #expect(elapsed >= .milliseconds(150))
        #expect(elapsed < .seconds(2))
    }

    @Test("a monitor whose client is queued in the backlog is busy within the timeout")
    func queuedInBacklog() throws {
        let server = try FakeQMPServer([], accepts: false)
        let start = ContinuousClock.now
        #expect(throws: QMPError.busy(path: server.path, timeout: .milliseconds(200))) {
            _ = try QMPConnection.connect(path: server.path, timeout: .milliseconds(200))
        }
        #expect(ContinuousClock.now - start < .seconds(2))
    }

    @Test("no socket at the path, or nobody listening, is noServer")
    func noServer() throws {
        let missing = NSTemporaryDirectory() + "qmp-test-missing-\(getpid())/qmp.sock"
        #expect(throws: QMPError.noServer(path: missing, errno: .noSuchFileOrDirectory)) {
            _ = try QMPConnection.connect(path: missing, timeout: .milliseconds(200))
        }
        // A socket file left by a QEMU that exited: bound, not listening.
        let stale = NSTemporaryDirectory() + "qmp-test-stale-\(getpid()).sock"
        unlink(stale)
        defer { unlink(stale) }
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        try #require(FakeQMPServer.bind(descriptor, to: stale) == 0)
        let error = #expect(throws: QMPError.self) { _ = try QMPConnection.connect(path: stale, timeout: .milliseconds(200)) }
        #expect(error == .noServer(path: stale, errno: .connectionRefused))
        #expect(error?.description.contains(stale) == true)
    }

    @Test("QEMU hanging up in the middle of a command is closed, and stays closed")
    func closedMidCommand() throws {
        let server = try FakeQMPServer(FakeQMPServer.handshake + [.answer { _ in nil }, .hangUp])
        var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
        #expect(throws: QMPError.closed(path: server.path)) { try connection.stop(timeout: .seconds(5)) }
        #expect(throws: QMPError.closed(path: server.path)) { try connection.cont(timeout: .seconds(5)) }
    }

    @Test("a reply that is not JSON is a protocol violation")
    func malformedReply() throws {
        let server = try FakeQMPServer(FakeQMPServer.handshake + [.answer { _ in #"{"return": {]"# + "\r\n" }, .awaitHangUp])
        var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
        let error = #expect(throws: QMPError.self) { try connection.execute("query-status", timeout: .seconds(5)) }
        guard case .protocolViolation(let path, let detail)? = error else {
            Issue.record("not a protocol violation: \(String(describing: error))")
            return
        }
        #expect(path == server.path)
        #expect(detail.contains(#"{"return": {]"#))
    }

    @Test("a first message that is not a greeting is a protocol violation")
    func notAGreeting() throws {
        let server = try FakeQMPServer([.send(#"{"hello": "world"}"# + "\r\n"), .awaitHangUp])
        let error = #expect(throws: QMPError.self) { _ = try QMPConnection.connect(path: server.path, timeout: .seconds(5)) }
        guard case .protocolViolation? = error else {
            Issue.record("not a protocol violation: \(String(describing: error))")
            return
        }
    }

    @Test("a line longer than the limit is a protocol violation")
    func lineTooLong() throws {
        let long = #"{"return": ""# + String(repeating: "x", count: 10_000) + "\"}\r\n"
        let server = try FakeQMPServer(FakeQMPServer.handshake + [.answer { _ in long }, .awaitHangUp])
        var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5), maximumMessageLength: 4096)
        #expect(throws: QMPError.protocolViolation(path: server.path, detail: "a message longer than 4096 bytes")) {
            try connection.execute("query-status", timeout: .seconds(5))
        }
    }

    @Test("a reply without a member its command returns is a protocol violation naming the command")
    func replyMissingMember() throws {
        let server = try FakeQMPServer(FakeQMPServer.handshake + [FakeQMPServer.returning(#"{"running": true}"#), .awaitHangUp])
        var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
        #expect(throws: QMPError.protocolViolation(path: server.path, detail: #"query-status: the query-status reply has no "status""#)) {
            try connection.queryStatus(timeout: .seconds(5))
        }
    }
}

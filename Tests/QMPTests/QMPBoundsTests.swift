import Foundation
import QMP
import Testing

/// Every call returns within its deadline and holds bounded memory whatever a monitor sends
/// (or does not send): silence, floods of events, blank lines or stale replies, a line that
/// never ends, another guest's identity.
@Suite("QMP connection bounds", .serialized) struct QMPBoundsTests {
    /// Well past any deadline these tests give, and well short of a hang.
    static let bound: Duration = .seconds(3)

    /// Runs `body`, and checks it took less than ``bound``.
    func withinBound<R>(_ body: () throws -> R) rethrows -> R {
        let start = ContinuousClock.now
        defer { #expect(ContinuousClock.now - start < Self.bound) }
        return try body()
    }

    @Test("a greeting, then silence: qmp_capabilities times out within the connect timeout")
    func greetingThenSilence() throws {
        let server = try FakeQMPServer([.send(FakeQMPServer.greeting), .awaitHangUp])
        let error = withinBound { #expect(throws: QMPError.self) { _ = try QMPConnection.connect(path: server.path, timeout: .milliseconds(200)) } }
        #expect(error == .timedOut(path: server.path, command: "qmp_capabilities", timeout: .milliseconds(200)))
    }

    @Test("an event flood before the handshake ends is a flood, from connect")
    func eventFloodDuringHandshake() throws {
        let server = try FakeQMPServer([
            .send(FakeQMPServer.greeting), .answer { _ in nil }, .flood(FakeQMPServer.event("RTC_CHANGE"), for: .seconds(5)),
        ])
        let error = withinBound { #expect(throws: QMPError.self) { _ = try QMPConnection.connect(path: server.path, timeout: .seconds(2)) } }
        guard case .flood(let path, let detail)? = error else {
            Issue.record("not a flood: \(String(describing: error))")
            return
        }
        #expect(path == server.path)
        #expect(detail.contains("\(QMPConnection.maximumUnsolicitedMessages)"))
    }

    @Test("blank lines before the greeting are counted: a flood of them is a flood")
    func blankLinesBeforeGreeting() throws {
        let server = try FakeQMPServer([.flood("\r\n", for: .seconds(5))])
        let error = withinBound { #expect(throws: QMPError.self) { _ = try QMPConnection.connect(path: server.path, timeout: .seconds(2)) } }
        guard case .flood? = error else {
            Issue.record("not a flood: \(String(describing: error))")
            return
        }
    }

    @Test("a few blank lines are skipped: the command gets its reply")
    func someBlankLines() throws {
        let server = try FakeQMPServer(
            FakeQMPServer.handshake + [
                .answer { "\r\n  \r\n\t\r\n" + FakeQMPServer.reply(#""return": {"name": "vm100"}"#, to: $0) }, .awaitHangUp,
            ])
        var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
        #expect(try connection.queryName(timeout: .seconds(5)) == "vm100")
    }

    @Test("an event flood while a command waits for its reply is a flood, and breaks the connection")
    func eventFloodDuringCommand() throws {
        let server = try FakeQMPServer(
            FakeQMPServer.handshake + [.answer { _ in nil }, .flood(FakeQMPServer.event("BLOCK_IO_ERROR"), for: .seconds(5))])
        var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
        let error = withinBound { #expect(throws: QMPError.self) { try connection.stop(timeout: .seconds(2)) } }
        guard case .flood? = error else {
            Issue.record("not a flood: \(String(describing: error))")
            return
        }
        // What was kept is bounded, and the connection stays broken.
        #expect(connection.pendingEvents.count <= QMPConnection.maximumPendingEvents)
        #expect(throws: error!) { try connection.cont(timeout: .seconds(1)) }
    }

    @Test("events that arrive without end while an agent drains them are a flood, not a loop")
    func eventFloodWhileDraining() throws {
        let server = try FakeQMPServer(FakeQMPServer.handshake + [.flood(FakeQMPServer.event("RTC_CHANGE"), for: .seconds(5))])
        var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
        // The agent's drain: read what is there until nothing is. The grace is for the fake
        // server's thread, which may not have written yet (or be between writes) on a busy host;
        // without it the drain could end before the flood began.
        var drained = 0
        let error = withinBound {
            #expect(throws: QMPError.self) {
                while true {
                    let events = try connection.readEvents(until: .now + .milliseconds(200))
                    if events.isEmpty { break }
                    drained += events.count
                }
            }
        }
        guard case .flood? = error else {
            Issue.record("not a flood: \(String(describing: error))")
            return
        }
        #expect(drained <= QMPConnection.maximumUnsolicitedMessages)
    }

    @Test("events nobody takes are kept up to the limit; one more is a flood")
    func pendingEventsBounded() throws {
        let half = QMPConnection.maximumPendingEvents / 2
        let events = String(repeating: FakeQMPServer.event("RTC_CHANGE"), count: half + 1)
        let server = try FakeQMPServer(
            FakeQMPServer.handshake + [
                .answer { events + FakeQMPServer.reply(#""return": {}"#, to: $0) },
                .answer { events + FakeQMPServer.reply(#""return": {}"#, to: $0) },
                .awaitHangUp,
            ])
        var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
        try connection.execute("query-status", timeout: .seconds(5))
        #expect(connection.pendingEvents.count == half + 1)
        #expect(throws: QMPError.flood(path: server.path, detail: "more than \(QMPConnection.maximumPendingEvents) events not taken")) {
            try connection.execute("query-status", timeout: .seconds(5))
        }
        #expect(connection.pendingEvents.count == QMPConnection.maximumPendingEvents)
    }

    @Test("a blank-line flood after the handshake is a flood")
    func blankLineFlood() throws {
        let server = try FakeQMPServer(FakeQMPServer.handshake + [.answer { _ in nil }, .flood("\r\n", for: .seconds(5))])
        var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
        let error = withinBound { #expect(throws: QMPError.self) { try connection.queryStatus(timeout: .seconds(2)) } }
        guard case .flood? = error else {
            Issue.record("not a flood: \(String(describing: error))")
            return
        }
    }

    @Test("a line that never ends cannot hold a call past its deadline")
    func endlessLine() throws {
        // Nothing is ever complete, so nothing is counted: only the deadline ends the call.
        let server = try FakeQMPServer(
            FakeQMPServer.handshake + [.answer { _ in nil }, .send(#"{"return": ""#), .flood("xxxxxxxx", for: .seconds(5))])
        var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
        let start = ContinuousClock.now
        #expect(throws: QMPError.timedOut(path: server.path, command: "query-status", timeout: .milliseconds(300))) {
            try connection.queryStatus(timeout: .milliseconds(300))
        }
        let elapsed = ContinuousClock.now - start
        #expect(elapsed >= .milliseconds(300))
        #expect(elapsed < .seconds(1))
    }

    @Test("a reply with another id is not taken for this command's: it times out")
    func replyWithAnotherID() throws {
        let server = try FakeQMPServer(
            FakeQMPServer.handshake + [.answer { _ in #"{"return": {"running": true, "status": "running"}, "id": 4242}"# + "\r\n" }, .awaitHangUp])
        var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
        withinBound {
            #expect(throws: QMPError.timedOut(path: server.path, command: "query-status", timeout: .milliseconds(200))) {
                try connection.queryStatus(timeout: .milliseconds(200))
            }
        }
    }

    @Test("a flood of replies with other ids is a flood")
    func staleReplyFlood() throws {
        let server = try FakeQMPServer(
            FakeQMPServer.handshake + [.answer { _ in nil }, .flood(#"{"return": {}, "id": 4242}"# + "\r\n", for: .seconds(5))])
        var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
        let error = withinBound { #expect(throws: QMPError.self) { try connection.queryStatus(timeout: .seconds(2)) } }
        guard case .flood? = error else {
            Issue.record("not a flood: \(String(describing: error))")
            return
        }
    }

    @Test("stop whose STOP event never comes: the events returned hold no STOP, within the deadline")
    func missingStopEvent() throws {
        let server = try FakeQMPServer(
            FakeQMPServer.handshake + [
                .answer { FakeQMPServer.event("BLOCK_IO_ERROR") + FakeQMPServer.reply(#""return": {}"#, to: $0) }, .awaitHangUp,
            ])
        var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
        try connection.stop(timeout: .seconds(5))
        var events = connection.takeEvents()
        #expect(events.map(\.name) == ["BLOCK_IO_ERROR"])
        events += try withinBound { try connection.readEvents(until: .now + .milliseconds(200)) }
        #expect(!events.contains { $0.name == "STOP" })
    }

    @Test("readEvents with a deadline passed already still reads what has arrived")
    func readEventsNow() throws {
        let server = try FakeQMPServer(
            FakeQMPServer.handshake + [.answer { FakeQMPServer.reply(#""return": {}"#, to: $0) + FakeQMPServer.event("STOP") }, .awaitHangUp])
        var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
        try connection.execute("query-status", timeout: .seconds(5))
        #expect(connection.takeEvents().isEmpty)
        // The event follows the reply in the same write: it is in the socket already.
        Thread.sleep(forTimeInterval: 0.05)
        #expect(try connection.readEvents(until: .now).map(\.name) == ["STOP"])
        #expect(try connection.readEvents(until: .now).isEmpty)
    }

    @Test("another guest on the socket: identity reports its name and UUID, not the expected ones")
    func wrongGuest() throws {
        let server = try FakeQMPServer(
            FakeQMPServer.handshake + [
                FakeQMPServer.returning(#"{"name": "vm200"}"#),
                FakeQMPServer.returning(#"{"UUID": "0b7d3a1e-2222-4c5d-8e9f-a0b1c2d3e4f5"}"#),
                .awaitHangUp,
            ])
        var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
        let identity = try withinBound { try connection.identity(timeout: .seconds(2)) }
        #expect(identity == QMPIdentity(name: "vm200", uuid: "0b7d3a1e-2222-4c5d-8e9f-a0b1c2d3e4f5"))
        #expect(identity.name != "vm100")
        #expect(identity.uuid != "c1f7e6b2-4d3a-4f5e-9a8b-0c1d2e3f4a5b")
        connection.close()
        #expect(server.requests().map(\.execute) == ["qmp_capabilities", "query-name", "query-uuid"])
    }

    @Test("identity is bounded by one timeout for both queries")
    func identitySilent() throws {
        let server = try FakeQMPServer(FakeQMPServer.handshake + [FakeQMPServer.returning(#"{"name": "vm100"}"#), .awaitHangUp])
        var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
        let start = ContinuousClock.now
        let error = #expect(throws: QMPError.self) { _ = try connection.identity(timeout: .milliseconds(300)) }
        #expect(ContinuousClock.now - start < .milliseconds(900))
        guard case .timedOut(_, let command, let timeout)? = error else {
            Issue.record("not a timeout: \(String(describing: error))")
            return
        }
        #expect(command == "query-uuid")
        #expect(timeout <= .milliseconds(300))
    }
}

import Foundation
import Glibc
import Synchronization

/// A stand-in for QEMU's monitor: a Unix socket in a temporary directory and a thread that
/// accepts one client and plays a script to it, byte for byte as written.
///
/// It reads the client's requests with Foundation's `JSONSerialization`, not with the
/// module under test, so that what the client sent is checked by an independent parser.
final class FakeQMPServer: Sendable {
    /// One step of the script.
    enum Step: Sendable {
        /// Writes these bytes in one `send`.
        case send(String)
        /// Reads one request line and writes what `answer` makes of it (nothing for nil).
        case answer(@Sendable (Request) -> String?)
        /// Writes these bytes again and again, without pause, for this long or until the
        /// client stops reading (a flood).
        case flood(String, for: Duration)
        /// Waits this long.
        case pause(Duration)
        /// Reads until the client hangs up (at most 10 seconds).
        case awaitHangUp
        /// Closes the connection.
        case hangUp
    }

    /// A request line the client sent, read by `JSONSerialization`.
    struct Request: Sendable {
        var line: String
        var execute: String?
        var id: Int?
        /// The `arguments` member's string members.
        var stringArguments: [String: String]
    }

    let path: String
    private let directory: String
    private let listener: Int32
    private let received = Mutex<[Request]>([])
    private let finished = DispatchSemaphore(value: 0)
    private let accepts: Bool

    /// QEMU 8.1.5's greeting as Proxmox VE's build sends it.
    static let greeting = #"{"QMP": {"version": {"qemu": {"micro": 5, "minor": 1, "major": 8}, "package": "pve-qemu-kvm_8.1.5-6"}, "capabilities": ["oob"]}}"# + "\r\n"

    /// The greeting and the answer to `qmp_capabilities`.
    static let handshake: [Step] = [.send(greeting), returning("{}")]

    /// An event line as QEMU writes it.
    static func event(_ name: String, seconds: Int = 1_732_104_000, microseconds: Int = 0) -> String {
        #"{"timestamp": {"seconds": \#(seconds), "microseconds": \#(microseconds)}, "event": "\#(name)"}"# + "\r\n"
    }

    /// Answers a request with `{"return": VALUE, "id": ID}`, its id echoed as QEMU does.
    static func returning(_ value: String) -> Step {
        .answer { request in reply(#""return": \#(value)"#, to: request) }
    }

    /// `{MEMBERS, "id": ID}\r\n`, without the id when the request had none.
    static func reply(_ members: String, to request: Request) -> String {
        "{\(members)\(request.id.map { #", "id": \#($0)"# } ?? "")}\r\n"
    }

    /// Listens at a new socket and, if `accepts`, plays `script` to the first client.
    /// A server that does not accept leaves clients in the listen backlog, as QEMU does
    /// while another client holds its monitor.
    init(_ script: [Step], accepts: Bool = true) throws {
        let template = NSTemporaryDirectory() + "qmp-test-XXXXXX"
        var buffer = Array(template.utf8CString)
        guard mkdtemp(&buffer) != nil else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        directory = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        path = directory + "/qmp.sock"
        listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        self.accepts = accepts
        guard listener >= 0, Self.bind(listener, to: path) == 0, listen(listener, 1) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        guard accepts else { return }
        let thread = Thread { [self] in
            defer { finished.signal() }
            var entry = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 10_000) == 1 else { return }
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            defer { close(client) }
            play(script, on: client)
        }
        thread.start()
    }

    /// Binds the Unix socket `descriptor` to `path`; the result of `bind`.
    static func bind(_ descriptor: Int32, to path: String) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    deinit {
        close(listener)
        unlink(path)
        rmdir(directory)
    }

    /// Waits for the script to end (at most 10 seconds) and returns the requests it read.
    func requests() -> [Request] {
        if accepts { _ = finished.wait(timeout: .now() + 10) }
        return received.withLock { $0 }
    }

    private func play(_ script: [Step], on client: Int32) {
        var pending: [UInt8] = []
        for step in script {
            switch step {
            case .send(let text):
                write(text, to: client)
            case .answer(let answer):
                guard let line = readLine(from: client, buffer: &pending) else { return }
                let request = Self.request(line)
                received.withLock { $0.append(request) }
                if let text = answer(request) { write(text, to: client) }
            case .flood(let text, let duration):
                // Whole lines, blocking: a write fails once the client has hung up.
                let end = ContinuousClock.now + duration
                while ContinuousClock.now < end, write(text, to: client) {}
            case .pause(let duration):
                Thread.sleep(forTimeInterval: Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18)
            case .awaitHangUp:
                var entry = pollfd(fd: client, events: Int16(POLLIN), revents: 0)
                var scratch = [UInt8](repeating: 0, count: 4096)
                while poll(&entry, 1, 10_000) == 1, recv(client, &scratch, scratch.count, 0) > 0 {}
            case .hangUp:
                return
            }
        }
    }

    /// Writes all of `text`; false when the client has gone.
    @discardableResult
    private func write(_ text: String, to client: Int32) -> Bool {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { return false }
            offset += sent
        }
        return true
    }

    /// The next line from the client, or nil when it hangs up first.
    private func readLine(from client: Int32, buffer: inout [UInt8]) -> String? {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                defer { buffer.removeSubrange(...newline) }
                return String(decoding: buffer[..<newline], as: UTF8.self)
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            var entry = pollfd(fd: client, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 10_000) == 1 else { return nil }
            let count = recv(client, &chunk, chunk.count, 0)
            guard count > 0 else { return nil }
            buffer += chunk[..<count]
        }
    }

    private static func request(_ line: String) -> Request {
        let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        let arguments = object?["arguments"] as? [String: Any] ?? [:]
        return Request(
            line: line, execute: object?["execute"] as? String, id: (object?["id"] as? NSNumber)?.intValue,
            stringArguments: arguments.compactMapValues { $0 as? String })
    }
}

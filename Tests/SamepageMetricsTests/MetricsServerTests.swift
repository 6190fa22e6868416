import Glibc
import Foundation
import SamepageMetrics
import Testing

/// A plain TCP client on 127.0.0.1, blocking with a receive timeout, so a test sees exactly
/// what the server does with the connection.
final class TCPConnection {
    private let fd: Int32
    private var pending: [UInt8] = []

    init(port: Int, timeout: Duration = .seconds(5)) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure.system("socket", errno) }
        let (seconds, attoseconds) = timeout.components
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            let error = errno
            close(fd)
            throw Failure.system("connect", error)
        }
    }

    deinit { close(fd) }

    enum Failure: Error {
        case system(String, Int32)
    }

    /// What one `recv` gives: bytes, the end of the stream, or an errno (EAGAIN on timeout).
    enum Read: Equatable {
        case bytes([UInt8])
        case end
        case failed(Int32)
    }

    func send(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// Sends raw bytes; false if not all of them could be sent (the send timeout passed).
    func send(bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { return false }
            sent += count
        }
        return true
    }

    /// Reads until `count` bytes came or the stream ended (or timed out): how many came, and
    /// whether the stream ended.
    func drain(upTo count: Int) -> (bytes: Int, ended: Bool) {
        var total = pending.count
        pending = []
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while total < count {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { total += n; continue }
            return (total, n == 0 || errno == ECONNRESET)
        }
        return (total, false)
    }

    func receive() -> Read {
        if !pending.isEmpty {
            defer { pending = [] }
            return .bytes(pending)
        }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count > 0 { return .bytes(Array(buffer[..<count])) }
        return count == 0 ? .end : .failed(errno)
    }

    /// Whether the server ended the connection (an orderly end of stream, or a reset) before
    /// the receive timeout; false if it sent bytes or stayed silent.
    func isClosedByServer() -> Bool {
        switch receive() {
        case .end, .failed(ECONNRESET): return true
        default: return false
        }
    }

    /// Sends `GET path` and reads one response: its status code and body; nil if the
    /// connection ended or timed out first.
    func get(_ path: String) -> (status: Int, body: String)? {
        request(path).map { ($0.status, $0.body) }
    }

    /// Sends `GET path` with `headers` (whole lines, like "Authorization: Basic …") and reads
    /// one response: its status code, its headers (names in lower case) and its body.
    func request(_ path: String, headers: [String] = []) -> (status: Int, headers: [String: String], body: String)? {
        let extra = headers.map { $0 + "\r\n" }.joined()
        guard send("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\(extra)\r\n") else { return nil }
        var data: [UInt8] = []
        let separator = Array("\r\n\r\n".utf8)
        while true {
            if let end = data.firstRange(of: separator) {
                let head = String(decoding: data[..<end.lowerBound], as: UTF8.self)
                let lines = head.split(separator: "\r\n")
                guard let statusLine = lines.first, let status = Int(statusLine.split(separator: " ")[1]) else { return nil }
                var fields: [String: String] = [:]
                for line in lines.dropFirst() {
                    let parts = line.split(separator: ":", maxSplits: 1)
                    guard parts.count == 2 else { continue }
                    fields[parts[0].lowercased()] = parts[1].trimmingCharacters(in: .whitespaces)
                }
                let length = fields["content-length"].flatMap { Int($0) } ?? 0
                let bodyStart = end.upperBound
                if data.count - bodyStart >= length {
                    pending = Array(data[(bodyStart + length)...])
                    return (status, fields, String(decoding: data[bodyStart..<(bodyStart + length)], as: UTF8.self))
                }
            }
            guard case .bytes(let more) = receive() else { return nil }
            data += more
        }
    }
}

@Suite("Metrics endpoint: connection cap and request deadline")
struct MetricsServerTests {
    static let text = "samepage_test_metric 42\n"

    /// Runs `body` with the port of a server bound on 127.0.0.1, and stops the server after.
    func withServer(
        _ limits: MetricsServer.Limits = MetricsServer.Limits(), _ body: (Int) async throws -> Void
    ) async throws {
        let server = try await MetricsServer(host: "127.0.0.1", port: 0, limits: limits) { Array(Self.text.utf8) }
        await server.start()
        #expect(server.boundAddress.hasPrefix("127.0.0.1:"))
        do {
            try await body(try #require(Int(server.boundAddress.split(separator: ":").last ?? "")))
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    @Test("By default 32 connections are served; each one more closes the one open longest")
    func connectionCap() async throws {
        #expect(MetricsServer.Limits().maximumConnections == 32)
        try await withServer { port in
            // Opened and answered one at a time, so the order they were admitted in is known
            // (accepts finish in any order across the event loops).
            var held: [TCPConnection] = []
            for _ in 0..<32 {
                let connection = try TCPConnection(port: port)
                let answer = connection.get("/metrics")
                #expect(answer?.status == 200)
                #expect(answer?.body == Self.text)
                held.append(connection)
            }
            for _ in 0..<3 {
                let extra = try TCPConnection(port: port)
                #expect(extra.get("/metrics")?.status == 200)
                held.append(extra)
            }
            // The three opened first made room; the others are still served.
            for connection in held.prefix(3) { #expect(connection.isClosedByServer()) }
            for connection in held.dropFirst(3) { #expect(connection.get("/metrics")?.status == 200) }
        }
    }

    @Test("A connection that sends nothing is closed at the request deadline, not before")
    func idleConnectionClosed() async throws {
        var limits = MetricsServer.Limits()
        limits.requestTimeout = .milliseconds(300)
        try await withServer(limits) { port in
            let start = ContinuousClock.now
            let connection = try TCPConnection(port: port)
            #expect(connection.isClosedByServer())
            let elapsed = ContinuousClock.now - start
            #expect(elapsed >= .milliseconds(290), "closed after \(elapsed)")
            #expect(elapsed < .seconds(3), "closed after \(elapsed)")
        }
    }

    @Test("A connection that keeps requesting (and reading) outlives many request deadlines, then is closed")
    func busyConnectionKept() async throws {
        var limits = MetricsServer.Limits()
        limits.requestTimeout = .milliseconds(600)
        try await withServer(limits) { port in
            let connection = try TCPConnection(port: port)
            let start = ContinuousClock.now
            var answers = 0
            // Five idle timeouts long, a request every 50 ms. The pause blocks this thread
            // rather than suspending: a task resumed late on a busy cooperative pool could
            // leave a real idle gap and the server would be right to close.
            while ContinuousClock.now - start < .seconds(3) {
                let answer = connection.get("/metrics")
                #expect(answer?.status == 200)
                #expect(answer?.body == Self.text)
                guard answer != nil else { break }
                answers += 1
                usleep(50_000)
            }
            #expect(answers >= 10, "answered \(answers) requests in 3 s")
            #expect(connection.isClosedByServer())
        }
    }
}

import Glibc
import Foundation
import SamepageMetrics
import Synchronization
import Testing

/// What a client that does not play by the rules can make the server do: bounded work and
/// memory for a client that pipelines and never reads, absolute deadlines that trickled bytes
/// cannot extend.
@Suite("Metrics endpoint: backpressure and absolute deadlines")
struct MetricsServerBoundsTests {
    /// Counts the renders, each of `size` bytes.
    final class CountingRenderer: Sendable {
        let renders = Atomic(0)
        let size: Int
        let firstOnly: Bool

        init(size: Int, firstOnly: Bool = false) {
            self.size = size
            self.firstOnly = firstOnly
        }

        func render() -> [UInt8] {
            let n = renders.add(1, ordering: .relaxed).newValue
            return [UInt8](repeating: UInt8(ascii: "x"), count: firstOnly && n > 1 ? 16 : size)
        }

        var count: Int { renders.load(ordering: .relaxed) }
    }

    func withServer(
        _ limits: MetricsServer.Limits, _ renderer: CountingRenderer, _ body: (Int) async throws -> Void
    ) async throws {
        let server = try await MetricsServer(host: "127.0.0.1", port: 0, limits: limits) { renderer.render() }
        await server.start()
        do {
            try await body(try #require(Int(server.boundAddress.split(separator: ":").last ?? "")))
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    static let request = Array("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)

    @Test("2,000 pipelined requests never read: a handful rendered at most, and the connection closed")
    func pipelinedFloodIsBounded() async throws {
        let renderer = CountingRenderer(size: 64 << 10)
        try await withServer(MetricsServer.Limits(), renderer) { port in
            let client = try TCPConnection(port: port, timeout: .seconds(3))
            // Sent in pieces, as fast as the server takes them; it may stop taking them.
            let flood = Array((0..<2000).map { _ in Self.request }.joined())
            _ = client.send(bytes: flood)
            try await Task.sleep(for: .seconds(1))
            #expect(renderer.count <= MetricsServer.Limits().maximumPipelinedRequests, "rendered \(renderer.count) times")
            // Over the pipelining bound: the server closed it (what was sent before the close
            // may still be read first).
            let drained = client.drain(upTo: .max)
            #expect(drained.ended)
            #expect(drained.bytes <= 8 * (64 << 10 + 200))
        }
    }

    @Test("Pipelined requests within the bound: the next is rendered only once the previous response was taken")
    func nextResponseWaitsForTheClient() async throws {
        // 24 MiB does not fit in loopback's socket buffers (a few MiB each way).
        let size = 24 << 20
        let renderer = CountingRenderer(size: size)
        // Deadlines far away: this is about backpressure, and a debug build on a loaded machine
        // takes seconds to move 72 MiB.
        var limits = MetricsServer.Limits()
        limits.responseTimeout = .seconds(120)
        try await withServer(limits, renderer) { port in
            let client = try TCPConnection(port: port, timeout: .seconds(30))
            #expect(client.send(bytes: Array([Self.request, Self.request, Self.request].joined())))
            try await Task.sleep(for: .seconds(1))
            #expect(renderer.count == 1, "rendered \(renderer.count) times while the client read nothing")
            let drained = client.drain(upTo: 3 * size)
            #expect(drained.bytes >= 3 * size)
            #expect(!drained.ended)
            #expect(renderer.count == 3)
        }
    }

    @Test("Bytes trickling in do not extend the request deadline")
    func tricklingRequestClosedAtDeadline() async throws {
        var limits = MetricsServer.Limits()
        limits.requestTimeout = .milliseconds(500)
        try await withServer(limits, CountingRenderer(size: 10)) { port in
            let client = try TCPConnection(port: port, timeout: .milliseconds(100))
            let start = ContinuousClock.now
            #expect(client.send("GET /metrics HTTP/1.1\r\n"))
            var closed = false
            var line = 0
            // A header line every 100 ms (the receive timeout), never the blank line that ends
            // the request.
            while !closed && ContinuousClock.now - start < .seconds(4) {
                if !client.send("X-Trickle-\(line): 1\r\n") { closed = true; break }
                line += 1
                closed = client.isClosedByServer()
            }
            let elapsed = ContinuousClock.now - start
            #expect(closed, "still open after \(elapsed) and \(line) header lines")
            #expect(elapsed >= .milliseconds(450), "closed after \(elapsed)")
            #expect(elapsed < .seconds(2), "closed after \(elapsed)")
        }
    }

    @Test("A response the client does not take is abandoned at the response deadline, and its place freed")
    func untakenResponseClosedAtDeadline() async throws {
        var limits = MetricsServer.Limits()
        limits.maximumConnections = 1
        limits.responseTimeout = .milliseconds(500)
        let size = 24 << 20
        let renderer = CountingRenderer(size: size, firstOnly: true)
        try await withServer(limits, renderer) { port in
            let stalled = try TCPConnection(port: port, timeout: .seconds(3))
            #expect(stalled.send(bytes: Self.request))
            try await Task.sleep(for: .seconds(1))
            // The one place is free again: a new client is served.
            var served = false
            for _ in 0..<40 where !served {
                if try TCPConnection(port: port).get("/metrics")?.status == 200 {
                    served = true
                } else {
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            #expect(served)
            let drained = stalled.drain(upTo: size + 1000)
            #expect(drained.ended)
            #expect(drained.bytes < size)
        }
    }

    @Test("Connections held open at the limit cannot lock a scraper out: the one open longest makes room")
    func heldConnectionsMakeRoom() async throws {
        var limits = MetricsServer.Limits()
        limits.maximumConnections = 2
        let renderer = CountingRenderer(size: 1000)
        try await withServer(limits, renderer) { port in
            // Two peers that send half a request and hold on, as trickling clients do.
            let first = try TCPConnection(port: port, timeout: .seconds(3))
            #expect(first.send("GET /metrics HTTP/1.1\r\n"))
            try await Task.sleep(for: .milliseconds(100))
            let second = try TCPConnection(port: port, timeout: .seconds(3))
            #expect(second.send("GET /metrics HTTP/1.1\r\n"))
            try await Task.sleep(for: .milliseconds(100))
            // A scraper is served at once, well before the 10 s request deadline frees a place.
            let start = ContinuousClock.now
            #expect(try TCPConnection(port: port).get("/metrics")?.status == 200)
            #expect(ContinuousClock.now - start < .seconds(2))
            // The oldest holder was closed for it; the younger one is still served.
            #expect(first.isClosedByServer())
            #expect(!second.isClosedByServer())
        }
    }
}

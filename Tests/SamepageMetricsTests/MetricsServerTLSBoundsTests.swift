import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import SamepageMetrics
import SamepageModel
import Synchronization
import Testing

/// The endpoint's bounds with TLS in front: what `MetricsServerBoundsTests` checks in clear.
/// Part of the serialized TLS suite: its servers, handshakes and curls run one at a time, and
/// never pile up on the memory of the tests that measure the process's.
extension MetricsServerSecurityTests {
    /// A TLS client (SwiftNIO's, certificates unchecked) that reads only when told to: it
    /// reads what the handshake needs, then stops once it has received any plaintext.
    static func connect(port: Int) async throws -> any Channel {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        let context = try NIOSSLContext(configuration: configuration)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.autoRead, value: false)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        channel.read()
        return channel
    }

    @Test("2,000 pipelined requests over TLS, never read: a handful rendered at most, and others still served")
    func pipelinedFloodIsBoundedOverTLS() async throws {
        let files = try TLSFiles()
        defer { files.remove() }
        let renders = Atomic(0)
        let security = try MetricsServer.Security(WebConfiguration(tls: .init(certificateFile: files.certificate, keyFile: files.key)))
        let server = try await MetricsServer(host: "127.0.0.1", port: 0, security: security) {
            renders.add(1, ordering: .relaxed)
            return [UInt8](repeating: UInt8(ascii: "x"), count: 64 << 10)
        }
        await server.start()
        defer { Task { await server.stop() } }
        let port = try #require(Int(server.boundAddress.split(separator: ":").last ?? ""))

        let flooder = try await Self.connect(port: port)
        let request = Array("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        flooder.writeAndFlush(ByteBuffer(bytes: Array((0..<2000).map { _ in request }.joined())), promise: nil)
        try await Task.sleep(for: .seconds(1))
        let rendered = renders.load(ordering: .relaxed)
        #expect(rendered >= 1, "the flood was never answered: no TLS session?")
        #expect(rendered <= MetricsServer.Limits().maximumPipelinedRequests, "rendered \(rendered) times")

        // The endpoint still serves a client that plays by the rules.
        let served = try Command.curl("https://127.0.0.1:\(port)/metrics", ["--cacert", files.certificate, "-o", "/dev/null"])
        #expect(served.code == 200, "\(served)")
        try? await flooder.close()
    }

    @Test func keyOfAnotherCertificateIsRefusedAtLoad() throws {
        let files = try TLSFiles()
        defer { files.remove() }
        try TLSFiles.makeCertificate(named: "other", key: "other-key", in: files.directory)
        let otherKey = files.directory + "/other-key.pem"
        do {
            _ = try MetricsServer.Security(WebConfiguration(tls: .init(certificateFile: files.certificate, keyFile: otherKey)))
            Issue.record("a key that is not the certificate's was taken")
        } catch {
            #expect(error.file == files.certificate)
            #expect(error.message.contains(otherKey), "\(error)")
        }
    }
}

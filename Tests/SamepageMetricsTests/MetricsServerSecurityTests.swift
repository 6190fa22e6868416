import Glibc
import Foundation
import SamepageMetrics
import SamepageModel
import Synchronization
import Testing

/// A throwaway directory with a self-signed certificate and its key (openssl's CLI, EC P-256,
/// one day, for 127.0.0.1 and localhost), removed by `remove()`.
struct TLSFiles {
    let directory: String
    var certificate: String { directory + "/cert.pem" }
    var key: String { directory + "/key.pem" }

    init() throws {
        directory = NSTemporaryDirectory() + "/samepage-tls-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Self.makeCertificate(named: "cert", key: "key", in: directory)
    }

    /// `NAME.pem` and `KEY.pem` in `directory`: a new self-signed certificate and its key.
    static func makeCertificate(named name: String, key: String, in directory: String) throws {
        let result = try Command.run(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-keyout", "\(directory)/\(key).pem", "-out", "\(directory)/\(name).pem",
            ])
        guard result.status == 0 else { throw Command.Failure(output: result.output) }
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// A command run to its end, its standard output and error together.
enum Command {
    struct Failure: Error { var output: String }

    static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    /// curl's answer to `GET url`: the status code it printed (0 when it got no response)
    /// and its exit status (0 on success, 35 or 56 for a failed handshake, 7 refused).
    static func curl(_ url: String, _ options: [String]) throws -> (code: Int, exit: Int32, body: String) {
        let result = try run(
            "/usr/bin/curl", ["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"] + options + [url])
        let lines = result.output.split(separator: "\n", omittingEmptySubsequences: false)
        let code = lines.last.flatMap { Int($0) } ?? 0
        return (code, result.status, lines.dropLast().joined(separator: "\n"))
    }
}

@Suite("Metrics endpoint: basic authentication and TLS", .serialized)
struct MetricsServerSecurityTests {
    static let text = "samepage_test_metric 7\n"

    /// Counts the renders of the metrics and the status page.
    final class Renders: Sendable {
        let count = Atomic(0)
        var content: MetricsServer.Content {
            MetricsServer.Content(
                metrics: { self.count.add(1, ordering: .relaxed); return Array(MetricsServerSecurityTests.text.utf8) },
                statusPage: { self.count.add(1, ordering: .relaxed); return Array("<html></html>".utf8) })
        }
        var value: Int { count.load(ordering: .relaxed) }
    }

    func withServer(
        _ security: MetricsServer.Security, limits: MetricsServer.Limits = MetricsServer.Limits(), renders: Renders = Renders(),
        _ body: (Int) async throws -> Void
    ) async throws {
        let server = try await MetricsServer(
            host: "127.0.0.1", port: 0, limits: limits, security: security, content: renders.content)
        await server.start()
        #expect(server.scheme == (security.tls == nil ? "http" : "https"))
        do {
            try await body(try #require(Int(server.boundAddress.split(separator: ":").last ?? "")))
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    static let users = ["prometheus": KnownHashes.cost4]

    @Test("No credentials or a wrong password: 401 with a challenge, and nothing rendered")
    func unauthorizedIsNotRendered() async throws {
        let renders = Renders()
        let authenticator = BasicAuthenticator(users: Self.users)
        try await withServer(MetricsServer.Security(authenticator: authenticator), renders: renders) { port in
            let connection = try TCPConnection(port: port)
            for path in ["/metrics", "/", "/elsewhere"] {
                let answer = connection.request(path)
                #expect(answer?.status == 401)
                #expect(answer?.headers["www-authenticate"] == "Basic realm=\"samepage\"")
                #expect(answer?.body == "unauthorized\n")
            }
            let wrong = connection.request("/metrics", headers: ["Authorization: " + KnownHashes.basic("prometheus", "guess")])
            #expect(wrong?.status == 401)
            let unknown = connection.request("/", headers: ["Authorization: " + KnownHashes.basic("root", KnownHashes.password)])
            #expect(unknown?.status == 401)
            #expect(renders.value == 0)

            // The right password, on the same connection: served, and checked by bcrypt once.
            let header = "Authorization: " + KnownHashes.basic("prometheus", KnownHashes.password)
            let right = connection.request("/metrics", headers: [header])
            #expect(right?.status == 200)
            #expect(right?.body == Self.text)
            #expect(right?.headers["www-authenticate"] == nil)
            #expect(connection.request("/", headers: [header])?.status == 200)
            #expect(renders.value == 2)
            #expect(authenticator.bcryptRuns == 3)
        }
    }

    @Test("A replaced security applies to connections accepted after, not to those already open")
    func replacedSecurityAppliesToNewConnections() async throws {
        let server = try await MetricsServer(host: "127.0.0.1", port: 0, content: Renders().content)
        await server.start()
        defer { Task { await server.stop() } }
        let port = try #require(Int(server.boundAddress.split(separator: ":").last ?? ""))
        let before = try TCPConnection(port: port)
        #expect(before.get("/metrics")?.status == 200)
        server.replaceSecurity(MetricsServer.Security(authenticator: BasicAuthenticator(users: Self.users)))
        #expect(server.security.authenticator != nil)
        #expect(try TCPConnection(port: port).get("/metrics")?.status == 401)
        #expect(before.get("/metrics")?.status == 200)
    }

    @Test("Over TLS: curl with the CA gets the metrics; without it the handshake fails")
    func tlsServes() async throws {
        let files = try TLSFiles()
        defer { files.remove() }
        let security = try MetricsServer.Security(
            WebConfiguration(tls: .init(certificateFile: files.certificate, keyFile: files.key), basicAuthUsers: Self.users))
        try await withServer(security) { port in
            let url = "https://127.0.0.1:\(port)/metrics"
            let served = try Command.curl(url, ["--cacert", files.certificate, "-u", "prometheus:\(KnownHashes.password)"])
            #expect(served.code == 200, "\(served)")
            #expect(served.body == Self.text)
            let anonymous = try Command.curl(url, ["--cacert", files.certificate])
            #expect(anonymous.code == 401, "\(anonymous)")
            // The system's authorities do not know the throwaway certificate.
            let untrusted = try Command.curl(url, [])
            #expect(untrusted.code == 0)
            #expect(untrusted.exit == 60, "\(untrusted)")
            // Only TLS 1.2 and later.
            let old = try Command.curl(url, ["--cacert", files.certificate, "--tls-max", "1.1", "-u", "prometheus:\(KnownHashes.password)"])
            #expect(old.code == 0)
            #expect(old.exit != 0)
        }
    }

    @Test("Plain HTTP to the TLS endpoint is closed without an HTTP answer; TLS clients are still served")
    func plaintextToTLSFailsCleanly() async throws {
        let files = try TLSFiles()
        defer { files.remove() }
        let renders = Renders()
        let security = try MetricsServer.Security(WebConfiguration(tls: .init(certificateFile: files.certificate, keyFile: files.key)))
        try await withServer(security, renders: renders) { port in
            let connection = try TCPConnection(port: port, timeout: .seconds(3))
            #expect(connection.send("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
            // At most a TLS alert, then the end; a receive timeout (3 s) ends the wait.
            var received: [UInt8] = []
            var ended = false
            reading: for _ in 0..<10 {
                switch connection.receive() {
                case .bytes(let bytes): received += bytes
                case .end, .failed(ECONNRESET): ended = true; break reading
                case .failed: break reading
                }
            }
            #expect(ended)
            #expect(!String(decoding: received, as: UTF8.self).hasPrefix("HTTP/"))
            #expect(renders.value == 0)
            let served = try Command.curl("https://127.0.0.1:\(port)/metrics", ["--cacert", files.certificate])
            #expect(served.code == 200)
            #expect(renders.value == 1)
        }
    }

    @Test("A connection that never finishes its handshake is closed at the request deadline")
    func handshakeUnderRequestDeadline() async throws {
        let files = try TLSFiles()
        defer { files.remove() }
        var limits = MetricsServer.Limits()
        limits.requestTimeout = .milliseconds(400)
        let security = try MetricsServer.Security(WebConfiguration(tls: .init(certificateFile: files.certificate, keyFile: files.key)))
        try await withServer(security, limits: limits) { port in
            let start = ContinuousClock.now
            let connection = try TCPConnection(port: port, timeout: .seconds(5))
            // The first bytes of a TLS record (a handshake, TLS 1.0 framing), then nothing.
            #expect(connection.send(bytes: [0x16, 0x03, 0x01, 0x00, 0x80, 0x01]))
            #expect(connection.isClosedByServer())
            let elapsed = ContinuousClock.now - start
            #expect(elapsed >= .milliseconds(380), "closed after \(elapsed)")
            #expect(elapsed < .seconds(3), "closed after \(elapsed)")
        }
    }

    @Test("RequireAndVerifyClientCert: a client without a certificate signed by client_ca_file is refused")
    func clientCertificates() async throws {
        let files = try TLSFiles()
        defer { files.remove() }
        try TLSFiles.makeCertificate(named: "client", key: "client-key", in: files.directory)
        try TLSFiles.makeCertificate(named: "stranger", key: "stranger-key", in: files.directory)
        let security = try MetricsServer.Security(WebConfiguration(tls: .init(
            certificateFile: files.certificate, keyFile: files.key, clientCAFile: files.directory + "/client.pem",
            clientAuth: .requireAndVerifyClientCert)))
        try await withServer(security) { port in
            let url = "https://127.0.0.1:\(port)/metrics"
            let trust = ["--cacert", files.certificate]
            let withCertificate = try Command.curl(
                url, trust + ["--cert", files.directory + "/client.pem", "--key", files.directory + "/client-key.pem"])
            #expect(withCertificate.code == 200, "\(withCertificate)")
            let without = try Command.curl(url, trust)
            #expect(without.code == 0, "\(without)")
            let stranger = try Command.curl(
                url, trust + ["--cert", files.directory + "/stranger.pem", "--key", files.directory + "/stranger-key.pem"])
            #expect(stranger.code == 0, "\(stranger)")
        }
    }

    @Test func unusableFilesNameTheFile() throws {
        let files = try TLSFiles()
        defer { files.remove() }
        let missing = files.directory + "/absent.pem"
        #expect(throws: MetricsSecurityError.self) {
            try MetricsServer.Security(WebConfiguration(tls: .init(certificateFile: missing, keyFile: files.key)))
        }
        do {
            _ = try MetricsServer.Security(WebConfiguration(tls: .init(certificateFile: files.certificate, keyFile: files.certificate)))
            Issue.record("a certificate was taken for a key")
        } catch {
            #expect(error.file == files.certificate)
            #expect(error.description.hasPrefix("\(files.certificate): not a PEM private key"))
        }
        do {
            _ = try MetricsServer.Security(WebConfiguration(tls: .init(certificateFile: files.key, keyFile: files.key)))
            Issue.record("a key was taken for a certificate")
        } catch {
            #expect(error.file == files.key)
        }
    }
}

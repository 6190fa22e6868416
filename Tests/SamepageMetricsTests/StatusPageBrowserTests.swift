import Foundation
import SamepageCore
import SamepageModel
import SamepageMetrics
import Testing

/// The status page as a real browser gets it from a real server: Debian's Chromium, headless,
/// loads `/` from a ``MetricsServer`` serving ``StatusFixture``; the DOM it built is asserted,
/// and a screenshot is taken (`SAMEPAGE_WRITE_SCREENSHOT=1` writes it to
/// `docs/status-page.png`). Without Chromium these tests fail: `scripts/testhost/setup.sh`
/// installs it.
@Suite("Status page in headless Chromium", .serialized)
struct StatusPageBrowserTests {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func withStatusServer(perGuest: Bool, _ body: (String) throws -> Void) async throws {
        let content = MetricsServer.Content(
            metrics: { MetricsExporter(version: "9.9", perGuest: perGuest).render(StatusFixture.snapshot) },
            statusPage: {
                StatusPage.render(StatusFixture.snapshot, sharing: perGuest ? StatusFixture.sharing : nil, perGuest: perGuest, version: "9.9")
            })
        let server = try await MetricsServer(host: "127.0.0.1", port: 0, content: content)
        await server.start()
        do {
            try body("http://\(server.boundAddress)/")
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    @Test("Chromium renders the host, the guests and the heatmap; a hostile name stays text")
    func dom() async throws {
        try await withStatusServer(perGuest: true) { url in
            let result = try Chromium.run(["--dump-dom", url])
            #expect(result.status == 0, "\(result.error)")
            let dom = result.output
            #expect(dom.contains("<title>samepaged status</title>"))
            #expect(dom.contains("<td>125 MiB (4.1%)</td>"))
            #expect(dom.contains("<td>web1</td>"))
            #expect(dom.contains("<td>web2</td>"))
            // The heatmap's nine cells, the largest darkest.
            #expect(dom.components(separatedBy: "stable nodes\"").count == 10)
            #expect(dom.contains("hsl(215, 70%, 35%)") || dom.contains("hsl(215,70%,35%)"))
            // Parsed as text: no <b> element came of the guest's name.
            #expect(!dom.contains("<b>evil"))
            #expect(dom.contains("&lt;b&gt;evil&lt;/b&gt;"))
        }
    }

    @Test("With per-guest figures off, the browser shows no guest")
    func perGuestOff() async throws {
        try await withStatusServer(perGuest: false) { url in
            let result = try Chromium.run(["--dump-dom", url])
            #expect(result.status == 0, "\(result.error)")
            #expect(result.output.contains("per_guest = false"))
            #expect(result.output.contains("<td>125 MiB (4.1%)</td>"))
            #expect(!result.output.contains("web1"))
            #expect(!result.output.contains("evil"))
        }
    }

    @Test("A screenshot of the page is a PNG of the window's size")
    func screenshot() async throws {
        let write = ProcessInfo.processInfo.environment["SAMEPAGE_WRITE_SCREENSHOT"] == "1"
        let file = write
            ? Self.root.appendingPathComponent("docs/status-page.png")
            : FileManager.default.temporaryDirectory.appendingPathComponent("samepage-status-\(UUID().uuidString).png")
        defer { if !write { try? FileManager.default.removeItem(at: file) } }
        try await withStatusServer(perGuest: true) { url in
            let result = try Chromium.run(["--screenshot=\(file.path)", "--window-size=1280,900", "--hide-scrollbars", url])
            #expect(result.status == 0, "\(result.error)")
            let png = try Data(contentsOf: file)
            #expect(png.prefix(8) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))
            // IHDR's width and height, big-endian, at bytes 16 and 20.
            let width = png[16..<20].reduce(0) { $0 << 8 | Int($1) }
            let height = png[20..<24].reduce(0) { $0 << 8 | Int($1) }
            #expect(width == 1280)
            #expect(height == 900)
            #expect(png.count > 10_000)
        }
    }
}

/// Debian's Chromium, headless, run to completion (at most 90 s).
enum Chromium {
    struct Missing: Error, CustomStringConvertible {
        var description: String {
            "chromium not found in PATH or /usr/bin: install Debian's chromium package "
                + "(apt-get install --no-install-recommends chromium; scripts/testhost/setup.sh does)"
        }
    }

    static func executable() throws -> URL {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let candidates = path.split(separator: ":").map { "\($0)/chromium" } + ["/usr/bin/chromium"]
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else { throw Missing() }
        return URL(fileURLWithPath: found)
    }

    /// Its exit status, standard output and standard error. A profile of its own in a
    /// temporary directory; no sandbox (tests run as root, which Chromium's sandbox refuses).
    static func run(_ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
        let profile = FileManager.default.temporaryDirectory.appendingPathComponent("samepage-chromium-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: profile) }
        let process = Process()
        process.executableURL = try executable()
        process.arguments = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--user-data-dir=\(profile.path)", "--virtual-time-budget=3000",
        ] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["HOME"] = profile.path
        process.environment = environment
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let watchdog = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 90, execute: watchdog)
        // Both pipes drained at once: a full stderr pipe would stall Chromium.
        let errorData = Locked(Data())
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) { errorData.set(err.fileHandleForReading.readDataToEndOfFile()) }
        let output = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        watchdog.cancel()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self), String(decoding: errorData.get(), as: UTF8.self))
    }

    final class Locked<Value>: @unchecked Sendable {
        private var value: Value
        private let lock = NSLock()
        init(_ value: Value) { self.value = value }
        func set(_ new: Value) { lock.withLock { value = new } }
        func get() -> Value { lock.withLock { value } }
    }
}

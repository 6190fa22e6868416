import Foundation
import Testing

/// The Prometheus rules the package ships (`packaging/prometheus/samepage-rules.yml`), checked
/// by promtool: the file loads (`promtool check rules`), its own tests pass (`promtool test
/// rules samepage-rules.test.yml`), and a broken copy fails both ways, so a promtool that
/// accepts anything cannot pass here. Without promtool these tests fail: it comes with Debian's
/// `prometheus` package, which `scripts/testhost/setup.sh` installs.
@Suite("Prometheus rules, through promtool")
struct PrometheusRulesTests {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let directory = root.appendingPathComponent("packaging/prometheus")
    static let rules = directory.appendingPathComponent("samepage-rules.yml")
    static let ruleTests = directory.appendingPathComponent("samepage-rules.test.yml")

    @Test("promtool check rules accepts the shipped rules and counts every one of them")
    func checkRules() throws {
        let text = try String(contentsOf: Self.rules, encoding: .utf8)
        let count = Self.lines(of: text, after: "- record:").count + Self.lines(of: text, after: "- alert:").count
        #expect(count >= 10)
        let result = try Promtool.run(["check", "rules", Self.rules.path])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("SUCCESS: \(count) rules found"), "\(result.output)")
    }

    @Test("promtool test rules passes the shipped tests")
    func testRules() throws {
        let result = try Promtool.run(["test", "rules", Self.ruleTests.lastPathComponent], in: Self.directory)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("SUCCESS"), "\(result.output)")
    }

    @Test("A copy with a broken expression fails promtool check rules")
    func brokenSyntaxFails() throws {
        try Self.withCopy(replacing: "expr: samepage_libvirt_connected == 0", by: "expr: samepage_libvirt_connected == (0") { copy in
            let result = try Promtool.run(["check", "rules", copy.appendingPathComponent("samepage-rules.yml").path])
            #expect(result.status != 0, "\(result.output)")
            #expect(result.output.contains("SamepageLibvirtDisconnected") || result.output.contains("parse error"), "\(result.output)")
        }
    }

    @Test("A copy with a wrong threshold still loads but fails the shipped tests")
    func wrongThresholdFailsTests() throws {
        let threshold = "/ (rate(samepage_reclaim_guest_seen_pause_seconds_count[5m]) > 0) > 0.05"
        try Self.withCopy(replacing: threshold, by: "/ (rate(samepage_reclaim_guest_seen_pause_seconds_count[5m]) > 0) > 0.5") { copy in
            let check = try Promtool.run(["check", "rules", copy.appendingPathComponent("samepage-rules.yml").path])
            #expect(check.status == 0, "\(check.output)")
            let result = try Promtool.run(["test", "rules", "samepage-rules.test.yml"], in: copy)
            #expect(result.status != 0, "\(result.output)")
            #expect(result.output.contains("SamepageReclaimPauseOverruns"), "\(result.output)")
        }
    }

    @Test("Every alert has a test, a severity and both annotations")
    func everyAlertTested() throws {
        let text = try String(contentsOf: Self.rules, encoding: .utf8)
        let alerts = Self.lines(of: text, after: "- alert:")
        let tested = Set(Self.lines(of: try String(contentsOf: Self.ruleTests, encoding: .utf8), after: "- alertname:"))
        #expect(!alerts.isEmpty)
        #expect(Set(alerts) == tested)
        let severities = Self.lines(of: text, after: "severity:")
        #expect(severities.count == alerts.count)
        #expect(Set(severities).isSubset(of: ["critical", "warning"]))
        #expect(Self.lines(of: text, after: "summary:").count == alerts.count)
        #expect(Self.lines(of: text, after: "description:").count == alerts.count)
    }

    /// promtool accepts a rule on a series that does not exist (it never fires): every
    /// `samepage_` name in the rules must be one the exporter writes (its golden exposition).
    @Test("Every series the rules name is one the exporter writes")
    func seriesExist() throws {
        let golden = try String(
            contentsOf: Self.root.appendingPathComponent("Tests/SamepageMetricsTests/Golden/metrics.txt"), encoding: .utf8)
        let exported = Set(golden.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line in
            String(line.prefix { $0 != "{" && $0 != " " })
        })
        let named = Self.seriesNames(in: try String(contentsOf: Self.rules, encoding: .utf8))
        #expect(named.count >= 10)
        #expect(named.subtracting(exported).sorted() == [])
    }

    // MARK: Helpers

    /// What follows `key` on each line that starts with it (after indentation), unquoted.
    static func lines(of text: String, after key: String) -> [String] {
        text.split(separator: "\n").compactMap { line in
            let trimmed = line.drop { $0 == " " }
            guard trimmed.hasPrefix(key) else { return nil }
            return trimmed.dropFirst(key.count).trimmingCharacters(in: CharacterSet(charactersIn: " \"'>-"))
        }
    }

    /// `samepage_…` and `process_…` words that are series names, not parts of a recorded name
    /// (`instance:samepage_process_cpu:rate5m`) or of another word.
    static func seriesNames(in text: String, prefixes: [String] = ["samepage_", "process_"]) -> Set<String> {
        let word = { (c: Character) in c.isLetter || c.isNumber || c == "_" || c == ":" }
        var names = Set<String>()
        for prefix in prefixes {
            var rest = Substring(text)
            while let start = rest.range(of: prefix) {
                let before = rest[..<start.lowerBound].last
                let token = rest[start.lowerBound...].prefix(while: word)
                rest = rest[token.endIndex...]
                if before.map(word) == true || token.contains(":") { continue }
                names.insert(String(token))
            }
        }
        return names
    }

    /// Runs `body` on a temporary directory holding the rules, with `old` replaced by `new`
    /// (which must be there), and the shipped tests beside them.
    static func withCopy(replacing old: String, by new: String, _ body: (URL) throws -> Void) throws {
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("samepage-rules-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: copy, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(at: copy) }
        let text = try String(contentsOf: rules, encoding: .utf8)
        try #require(text.contains(old), "the rules no longer contain \(old)")
        try text.replacingOccurrences(of: old, with: new)
            .write(to: copy.appendingPathComponent("samepage-rules.yml"), atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(at: ruleTests, to: copy.appendingPathComponent("samepage-rules.test.yml"))
        try body(copy)
    }
}

/// Debian's promtool, run to completion.
enum Promtool {
    struct Missing: Error, CustomStringConvertible {
        var description: String {
            "promtool not found in PATH or /usr/bin: install Debian's prometheus package "
                + "(apt-get install --no-install-recommends prometheus; scripts/testhost/setup.sh does)"
        }
    }

    static func executable() throws -> URL {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let candidates = path.split(separator: ":").map { "\($0)/promtool" } + ["/usr/bin/promtool"]
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else { throw Missing() }
        return URL(fileURLWithPath: found)
    }

    /// Its exit status and everything it wrote (standard output and error together).
    static func run(_ arguments: [String], in directory: URL? = nil) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = try executable()
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = directory }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }
}

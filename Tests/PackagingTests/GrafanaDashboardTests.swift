import Foundation
import Testing

/// The Grafana dashboard the package ships (`packaging/grafana/samepage-dashboard.json`):
/// every query in it is evaluated by promtool against synthetic series
/// (`samepage-dashboard.test.yml`, its expected values worked out by hand there), the test file
/// holds exactly the dashboard's queries, and every series they name is one the exporter
/// writes. Without promtool these tests fail (`scripts/testhost/setup.sh` installs it).
@Suite("Grafana dashboard, every query through promtool")
struct GrafanaDashboardTests {
    static let directory = PrometheusRulesTests.root.appendingPathComponent("packaging/grafana")
    static let dashboard = directory.appendingPathComponent("samepage-dashboard.json")
    static let queryTests = directory.appendingPathComponent("samepage-dashboard.test.yml")

    /// Every target's `expr`, with Grafana's variables as a dashboard with all hosts selected
    /// sends them.
    static func queries() throws -> [String] {
        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: dashboard)) as? [String: Any])
        let panels = try #require(json["panels"] as? [[String: Any]])
        return panels.flatMap { ($0["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String } }
            .map { $0.replacingOccurrences(of: "$instance", with: ".*").replacingOccurrences(of: "$__rate_interval", with: "5m") }
    }

    static func testedQueries() throws -> [String] {
        PrometheusRulesTests.lines(of: try String(contentsOf: queryTests, encoding: .utf8), after: "- expr:")
    }

    @Test("The test file holds exactly the dashboard's queries")
    func everyQueryTested() throws {
        let queries = try Self.queries()
        #expect(queries.count >= 12)
        #expect(Set(queries) == Set(try Self.testedQueries()))
    }

    @Test("promtool evaluates every query to the expected samples")
    func queriesEvaluate() throws {
        let result = try Promtool.run(["test", "rules", Self.queryTests.lastPathComponent], in: Self.directory)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("SUCCESS"), "\(result.output)")
    }

    @Test("A wrong expected value fails promtool")
    func wrongValueFails() throws {
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("samepage-dashboard-\(UUID().uuidString).test.yml")
        defer { try? FileManager.default.removeItem(at: copy) }
        let text = try String(contentsOf: Self.queryTests, encoding: .utf8)
        try #require(text.contains("value: 0.019\n"))
        try text.replacingOccurrences(of: "value: 0.019\n", with: "value: 0.02\n").write(to: copy, atomically: true, encoding: .utf8)
        let result = try Promtool.run(["test", "rules", copy.lastPathComponent], in: copy.deletingLastPathComponent())
        #expect(result.status != 0, "\(result.output)")
    }

    @Test("Every series the dashboard names is one the exporter writes; hosts come from samepage_build_info")
    func seriesExist() throws {
        let golden = try String(
            contentsOf: PrometheusRulesTests.root.appendingPathComponent("Tests/SamepageMetricsTests/Golden/metrics.txt"), encoding: .utf8)
        let exported = Set(golden.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line in
            String(line.prefix { $0 != "{" && $0 != " " })
        })
        let text = try String(contentsOf: Self.dashboard, encoding: .utf8)
        let named = PrometheusRulesTests.seriesNames(in: text, prefixes: ["samepage_", "process_"])
        #expect(named.count >= 12)
        #expect(named.subtracting(exported).sorted() == [])
        #expect(text.contains("label_values(samepage_build_info, instance)"))
    }
}

import Foundation
@testable import SamepageAgent
import Testing

/// samepaged's own cost: `statm`'s resident pages, read at most once a second.
@Suite("Agent cost")
struct AgentCostMeterTests {
    @Test func residentIsStatmsSecondFieldInPages() {
        #expect(AgentCostMeter.residentBytes(statm: "52000 21000 3000 500 0 40000 0\n", pageSize: 4096) == 86_016_000)
        #expect(AgentCostMeter.residentBytes(statm: "52000\n", pageSize: 4096) == nil)
        #expect(AgentCostMeter.residentBytes(statm: "a b c", pageSize: 4096) == nil)
    }

    @Test func readsAFileAtMostOnceASecondAndGivesTheCPURatioOnceItSpansTime() throws {
        let path = NSTemporaryDirectory() + "samepage-statm-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "100 25 0 0 0 0 0\n".write(toFile: path, atomically: true, encoding: .utf8)
        var meter = AgentCostMeter(statmPath: path)
        let start = ContinuousClock.now
        let firstRead = meter.read(at: start)
        let first = try #require(firstRead)
        #expect(first.residentBytes == 25 * Int(sysconf(Int32(_SC_PAGESIZE))))
        #expect(first.cpuRatio == nil)
        #expect(first.cpuSeconds > 0)
        // Within the second: the last reading, even though the file changed.
        try "100 50 0 0 0 0 0\n".write(toFile: path, atomically: true, encoding: .utf8)
        let again = meter.read(at: start + .milliseconds(500))
        #expect(again == first)
        let secondRead = meter.read(at: start + .seconds(2))
        let second = try #require(secondRead)
        #expect(second.residentBytes == 50 * Int(sysconf(Int32(_SC_PAGESIZE))))
        #expect(second.cpuRatio != nil)
    }

    @Test func anUnreadableStatmGivesNothing() {
        var meter = AgentCostMeter(statmPath: "/nonexistent/statm")
        let read = meter.read(at: .now)
        #expect(read == nil)
    }
}

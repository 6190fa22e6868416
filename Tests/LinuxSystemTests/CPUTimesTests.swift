import LinuxSystem
import Testing

@Suite("CPU times from /proc/stat") struct CPUTimesTests {
    @Test func parsesTheCPULineAndTheIdleShare() throws {
        let before = try #require(CPUTimes(parsing: "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n"))
        #expect(before.idle == 850)  // idle 800 + iowait 50
        #expect(before.total == 1000)
        // 200 ticks more, 20 of them idle: 10% idle.
        let after = try #require(CPUTimes(parsing: "cpu  250 0 80 815 55 0 0 0 0 0\n"))
        #expect(after.idlePercent(since: before) == 10)
        #expect(before.idlePercent(since: after) == nil)  // backwards
        #expect(before.idlePercent(since: before) == nil)  // no tick
    }

    @Test(arguments: ["", "cpu0 1 2 3 4\n", "cpu  1 2 x 4\n", "cpu  1 2 3\n"])
    func refusesMalformedText(_ text: String) {
        #expect(CPUTimes(parsing: text) == nil)
    }

    @Test func readsThisHost() throws {
        let times = try CPUTimes.read()
        #expect(times.total >= times.idle && times.total > 0)
    }
}

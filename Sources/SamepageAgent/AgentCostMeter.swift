import Foundation
import Glibc
import SamepageModel

/// samepaged's own cost, for the savings' last figure: its resident memory from
/// `/proc/self/statm` and its CPU time from `getrusage(RUSAGE_SELF)`, with the CPU used over
/// the last 10 seconds.
///
/// Read on the agent's thread, never on Swift's cooperative pool (a read of `/proc` is a
/// system call like any other), at most once a second: publishes come four a second.
struct AgentCostMeter {
    private var cpu = RateWindow(span: .seconds(10))
    private var last: AgentCost?
    private var readAt: ContinuousClock.Instant?
    /// Where `statm` is read: `/proc/self/statm`, another file in tests.
    let statmPath: String

    init(statmPath: String = "/proc/self/statm") {
        self.statmPath = statmPath
    }

    /// The cost now, read again if a second has passed since the last reading; nil when
    /// `statm` cannot be read.
    mutating func read(at now: ContinuousClock.Instant) -> AgentCost? {
        if let readAt, now - readAt < .seconds(1) { return last }
        readAt = now
        guard let text = try? String(contentsOfFile: statmPath, encoding: .utf8),
              let resident = Self.residentBytes(statm: text, pageSize: Int(sysconf(Int32(_SC_PAGESIZE))))
        else {
            last = nil
            return nil
        }
        let seconds = Self.cpuSeconds()
        cpu.add(Int((seconds * 1_000_000).rounded()), at: now)
        let ratio = cpu.perSecond / 1_000_000
        last = AgentCost(residentBytes: resident, cpuSeconds: seconds, cpuRatio: cpu.spansTime ? ratio : nil)
        return last
    }

    /// The second field of `statm` (resident pages) times the page size; nil when malformed.
    static func residentBytes(statm: String, pageSize: Int) -> Int? {
        let fields = statm.split(separator: " ")
        guard fields.count >= 2, let pages = Int(fields[1].trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
        return pages * pageSize
    }

    /// User and system CPU time of every thread, in seconds.
    static func cpuSeconds() -> Double {
        var usage = rusage()
        guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0 else { return 0 }
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1_000_000 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }
}

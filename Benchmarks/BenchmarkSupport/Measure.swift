// What the benchmarks share: page contents from a seed, and the process's clocks and memory.
import Glibc
import Foundation
import SamepageCore
import SamepageMetrics

/// SplitMix64: a fast generator whose state is its seed, so a page's content is a function of
/// its content id.
public struct SplitMix64 {
    /// The generator's whole state; the same state gives the same sequence.
    public var state: UInt64
    /// A generator starting from `state`.
    public init(state: UInt64) { self.state = state }
    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Fills one page with the content `id` stands for: zeroes for 0, otherwise words drawn from
/// a generator seeded by the id (different ids, different pages).
public func fillPage(_ page: UnsafeMutableRawPointer, id: UInt64) {
    let words = page.assumingMemoryBound(to: UInt64.self)
    guard id != 0 else { words.update(repeating: 0, count: pageSize / 8); return }
    var rng = SplitMix64(state: id &* 0x2545_F491_4F6C_DD1D)
    for i in 0..<(pageSize / 8) { words[i] = rng.next() }
}

/// This process's user and system CPU seconds, all threads (`getrusage`).
public func cpuSeconds() -> Double { processCPUSeconds() ?? 0 }

/// Seconds on the monotonic clock.
public func wallSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

/// Resident anonymous memory of this process (`RssAnon` of `/proc/self/status`), in bytes:
/// where the engine's heap lives, apart from shared memory the process maps (`RssShmem`).
public func anonymousResidentBytes() -> Int {
    let status = try! String(contentsOfFile: "/proc/self/status", encoding: .utf8)
    let line = status.split(separator: "\n").first { $0.hasPrefix("RssAnon:") }!
    return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])! * 1024
}

/// Pages per second in thousands, "-" for no time.
public func rate(_ pages: Int, _ seconds: Double) -> String {
    seconds > 0 ? String(format: "%.0fK", Double(pages) / seconds / 1000) : "-"
}

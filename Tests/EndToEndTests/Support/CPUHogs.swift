import Glibc
import Foundation

/// A CPU hog per core, started as the test's own children and killed at the end.
final class CPUHogs {
    private(set) var pids: [pid_t] = []

    init(count: Int = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) throws {
        for _ in 0..<count {
            pids.append(try TestHost.spawn("/bin/sh", ["-c", "while :; do :; done"], output: "/dev/null"))
        }
    }

    /// A load per core that keeps it about `busyShare` busy in random bursts of 20 to 300 ms
    /// (an ordinary busy host, not a saturated one), as `Benchmarks/busy-host-reclaim.sh` does.
    init(bursts busyShare: Double, count: Int = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) throws {
        let program = """
            import random, time
            while True:
                burst = random.uniform(0.02, 0.3)
                end = time.monotonic() + burst
                while time.monotonic() < end:
                    pass
                time.sleep(burst * \(1 - busyShare) / \(busyShare))
            """
        for _ in 0..<count {
            pids.append(try TestHost.spawn("/usr/bin/python3", ["-c", program], output: "/dev/null"))
        }
    }

    func stop() {
        for pid in pids {
            kill(pid, SIGKILL)
            _ = TestHost.wait(pid)
        }
        pids = []
    }

    deinit { stop() }
}

/// The share of the last second the CPUs were busy, from /proc/stat, in percent.
func cpuBusyPercent() -> Double {
    func read() -> (idle: Double, total: Double) {
        let text = (try? String(contentsOfFile: "/proc/stat", encoding: .utf8)) ?? ""
        let fields = text.split(separator: "\n").first?.split(separator: " ").dropFirst().compactMap { Double($0) } ?? []
        guard fields.count >= 5 else { return (0, 0) }
        return (fields[3] + fields[4], fields.prefix(8).reduce(0, +))
    }
    let a = read()
    usleep(1_000_000)
    let b = read()
    guard b.total > a.total else { return -1 }
    return 100 - (b.idle - a.idle) / (b.total - a.total) * 100
}

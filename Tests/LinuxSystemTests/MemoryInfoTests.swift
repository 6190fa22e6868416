import Foundation
import LinuxSystem
import Testing

@Suite("/proc/meminfo") struct MemoryInfoTests {
    @Test func parsesTotalAndAvailable() throws {
        let text = """
            MemTotal:       24684084 kB
            MemFree:        18914540 kB
            MemAvailable:   23463316 kB
            Buffers:          123456 kB
            HugePages_Total:       0

            """
        #expect(MemoryInfo(parsing: text) == MemoryInfo(totalBytes: 24_684_084 * 1024, availableBytes: 23_463_316 * 1024))
    }

    @Test(arguments: [
        "", "MemTotal:       1000 kB\n", "MemAvailable:   1000 kB\n",
        "MemTotal:       1000 kB\nMemAvailable:   x kB\n", "MemTotal:       1000 MB\nMemAvailable:   10 kB\n",
        "MemTotal:       1000\nMemAvailable:   10 kB\n", "MemTotal: 18014398509481984 kB\nMemAvailable: 1 kB\n",
    ])
    func refusesWhatItCannotRead(_ text: String) {
        #expect(MemoryInfo(parsing: text) == nil)
    }

    @Test func readsThisHostsFile() throws {
        let info = try MemoryInfo.read()
        #expect(info.totalBytes > 0)
        #expect(info.availableBytes <= info.totalBytes)
        #expect(throws: SystemError(errno: .noSuchFileOrDirectory, operation: "open /nonexistent/meminfo")) {
            try MemoryInfo.read(path: "/nonexistent/meminfo")
        }
        let path = NSTemporaryDirectory() + "/samepage-meminfo-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data("MemFree: 1 kB\n".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: SystemError(errno: .invalidArgument, operation: "parse \(path)")) { try MemoryInfo.read(path: path) }
    }
}

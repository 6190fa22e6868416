import Glibc
import Foundation
@testable import GuestMemory
import SamepageCore
import Testing

/// The stress test's stand-in guest (Tests/StressWriter), run as a child process.
final class StressWriter {
    static var path: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("samepage-stress-writer").path
    }

    let pid: pid_t
    let pages: Int
    private let outputPath: String
    let address: UInt64

    init(pages: Int, threads: Int) throws {
        self.pages = pages
        outputPath = "/tmp/samepage-stress-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).out"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let arguments: [String] = [Self.path, "\(pages)", "\(threads)"]
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for arg in argv { free(arg) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, Self.path, &actions, nil, argv, environ)
        guard spawned == 0 else { throw SystemError(errno: Errno(rawValue: spawned), operation: "spawn \(Self.path)") }
        self.pid = pid
        var ready: Substring?
        for _ in 0..<200 where ready == nil {
            usleep(20_000)
            ready = ((try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "").split(separator: "\n").first { $0.hasPrefix("READY") }
        }
        guard let ready else { throw SystemError(errno: .timedOut, operation: "writer never got ready") }
        address = UInt64(ready.split(separator: " ")[1], radix: 16)!
    }

    /// The writer's memfd, opened the way the daemon opens a guest's RAM.
    func region() throws -> GuestRegion {
        let mapping = try #require(try MemoryMapping.read(pid: pid).first { $0.addresses.lowerBound == address })
        return try GuestRegion(mapping: mapping, of: pid, backendID: "writer", access: .readWrite)
    }

    /// Test-only quiesce: SIGSTOP, then wait until every thread of the writer is stopped
    /// (SIGSTOP returns before the threads actually stop). The product never does this: it
    /// pauses guests through libvirt.
    func quiesce() throws {
        kill(pid, SIGSTOP)
        for _ in 0..<10_000 {
            if try allThreadsStopped() { return }
            usleep(50)
        }
        throw SystemError(errno: .timedOut, operation: "writer threads did not stop")
    }

    private func allThreadsStopped() throws -> Bool {
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")
        for task in tasks {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }  // a thread that just exited
            let state = stat[stat.index(close, offsetBy: 2)]
            if state != "T" && state != "t" { return false }
        }
        return true
    }

    func resume() { kill(pid, SIGCONT) }

    /// Stops the writer and returns its final count.
    func finish() -> (writes: Int, checks: Int, lost: Int) {
        kill(pid, SIGCONT)
        kill(pid, SIGUSR1)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        unlink(outputPath)
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("RESULT") }) else { return (0, 0, -1) }
        var values: [String: Int] = [:]
        for field in line.split(separator: " ").dropFirst() {
            let pair = field.split(separator: "=")
            values[String(pair[0])] = Int(pair[1])
        }
        return (values["writes"] ?? 0, values["checks"] ?? 0, values["lost"] ?? -1)
    }
}

@Suite("Zero-page reclaim: verify and punch", .serialized)
struct ReclaimStressTests {
    @Test("No write is lost over 100,000 verify-and-punch attempts against a writer flipping pages")
    func noLostWrites() throws {
        let writer = try StressWriter(pages: 512, threads: 4)
        let region = try writer.region()
        var attempts = 0, punched = 0, freed = 0
        while attempts < 100_000 {
            try writer.quiesce()
            let outcome = try region.reclaimZeroPages(Array(0..<writer.pages))
            writer.resume()
            attempts += outcome.pagesPunched + outcome.pagesChanged
            punched += outcome.pagesPunched
            freed += outcome.bytesFreed
            usleep(300)
        }
        let result = writer.finish()
        #expect(result.lost == 0, "lost writes: \(result)")
        #expect(result.writes > 10_000, "the writer kept writing: \(result)")
        #expect(punched > 10_000, "zero pages were punched: \(punched)")
        #expect(freed > 0)
    }

    @Test("The writer's check catches a write lost to a punch of a page that held data")
    func checkCatchesLoss() throws {
        let writer = try StressWriter(pages: 64, threads: 2)
        let region = try writer.region()
        usleep(100_000)
        try writer.quiesce()
        // Punch every page holding data, bypassing the zero check.
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: pageSize, alignment: pageSize)
        defer { buffer.deallocate() }
        var destroyed = 0
        for page in 0..<writer.pages {
            try region.read(page: page, into: UnsafeMutableRawBufferPointer(start: buffer, count: pageSize))
            if !isZeroPage(buffer) {
                try LinuxCalls.punchHole(region.descriptor, offset: page * pageSize, length: pageSize)
                destroyed += 1
            }
        }
        writer.resume()
        let result = writer.finish()
        #expect(destroyed > 0)
        #expect(result.lost >= 1, "\(result)")
    }

    @Test("Only pages still zero are punched; allocated bytes drop by what was freed")
    func punchesOnlyZeroPages() throws {
        let writer = try StressWriter(pages: 64, threads: 1)
        let region = try writer.region()
        try writer.quiesce()
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: pageSize, alignment: pageSize)
        defer { buffer.deallocate() }
        var zero = 0
        for page in 0..<writer.pages {
            try region.read(page: page, into: UnsafeMutableRawBufferPointer(start: buffer, count: pageSize))
            if isZeroPage(buffer) { zero += 1 }
        }
        let before = try region.allocatedBytes()
        let outcome = try region.reclaimZeroPages(Array(0..<writer.pages) + [0, 1])
        #expect(outcome.pagesPunched == zero)
        #expect(outcome.pagesChanged == writer.pages - zero)
        #expect(outcome.bytesFreed == zero * pageSize)
        #expect(try region.allocatedBytes() == before - outcome.bytesFreed)
        // A second pass finds the holes not resident and leaves them alone.
        let again = try region.reclaimZeroPages(Array(0..<writer.pages))
        #expect(again.pagesPunched == 0 && again.bytesFreed == 0)
        try region.repopulate(0..<writer.pages)
        #expect(try region.allocatedBytes() == writer.pages * pageSize)
        writer.resume()
        #expect(writer.finish().lost == 0)
    }
}

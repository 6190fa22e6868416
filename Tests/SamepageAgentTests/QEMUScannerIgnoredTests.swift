import Foundation
import Glibc
import Logging
@testable import SamepageAgent
import SamepageModel
import Testing

/// The scanner's report of processes named like a QEMU that are not trusted: against a fake
/// proc root whose `exe` links point at this host's real, root-owned QEMU binary, so that only
/// the uid (from the fake `status`) refuses them.
@Suite("QEMU scanner: ignored processes") struct QEMUScannerIgnoredTests {
    static let binary = "/usr/bin/qemu-system-x86_64"

    private func fakeProc(_ processes: [(pid: Int32, uid: UInt32, name: String)]) throws -> String {
        let root = "/tmp/samepage-scanner-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        for process in processes {
            let directory = "\(root)/\(process.pid)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try "\(process.pid) (qemu-system-x86) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 \(1000 + Int(process.pid)) 1 1\n"
                .write(toFile: "\(directory)/stat", atomically: false, encoding: .utf8)
            symlink(Self.binary, "\(directory)/exe")
            try (["qemu-system-x86_64", "-name", process.name].map { $0 + "\0" }.joined())
                .write(toFile: "\(directory)/cmdline", atomically: false, encoding: .utf8)
            try "Name:\tqemu-system-x86\nUid:\t\(process.uid)\t\(process.uid)\t\(process.uid)\t\(process.uid)\n"
                .write(toFile: "\(directory)/status", atomically: false, encoding: .utf8)
        }
        return root
    }

    private func scanner(procRoot: String) throws -> QEMUScanner {
        var configuration = AgentConfiguration()
        configuration.procRoot = procRoot
        configuration.libvirtRunDirectory = "\(procRoot)/none"
        return try #require(QEMUScanner(configuration: configuration, processes: ProcessTables(procRoot: procRoot), logger: Logger(label: "test")))
    }

    @Test func anotherUsersQEMUIsReportedWithWhy() throws {
        guard access(Self.binary, X_OK) == 0 else { return }
        let root = try fakeProc([(4321, 65534, "db1")])
        defer { try? FileManager.default.removeItem(atPath: root) }
        var scanner = try scanner(procRoot: root)
        #expect(scanner.scan(at: .now, force: true) == [])
        #expect(scanner.ignored == [IgnoredProcess(
            pid: 4321, uid: 65534, executable: Self.binary,
            reason: "it runs as uid 65534, not root or a configured hypervisor user (qemu.hypervisor_users)", claimedName: "db1")])
    }

    @Test func atMost32AreReportedTheLowestPidsFirst() throws {
        guard access(Self.binary, X_OK) == 0 else { return }
        let root = try fakeProc((0..<40).map { (Int32(5000 + $0), 1000, "vm\($0)") })
        defer { try? FileManager.default.removeItem(atPath: root) }
        var scanner = try scanner(procRoot: root)
        _ = scanner.scan(at: .now, force: true)
        #expect(scanner.ignored.count == 32)
        #expect(scanner.ignored.first?.pid == 5000)
        #expect(scanner.ignored.last?.pid == 5031)
    }
}

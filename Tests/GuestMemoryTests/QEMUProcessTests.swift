import Foundation
import Glibc
import Testing
@testable import GuestMemory

@Suite struct QEMUProcessTests {
    /// A process whose command line looks like a libvirt guest's QEMU. Stop it with `kill`:
    /// it inherits the test runner's signal mask, which may block SIGTERM.
    static func fakeQEMU(name: String, uuid: UUID) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/perl")
        process.arguments = ["-e", "sleep 60", "--", "-name", "guest=\(name.replacingOccurrences(of: ",", with: ",,")),debug-threads=on",
                             "-uuid", uuid.uuidString.lowercased()]
        try process.run()
        // Until it has exec'd, the child's command line is the test runner's.
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline,
              !((try? String(contentsOfFile: "/proc/\(process.processIdentifier)/cmdline", encoding: .utf8))?.contains("-uuid") ?? false) {
            usleep(5_000)
        }
        return process
    }

    static func kill(_ process: Process) {
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    @Test func pidfdSeesExit() throws {
        let child = try Self.fakeQEMU(name: "g", uuid: UUID())
        let process = try QEMUProcess(pid: child.processIdentifier)
        let alive = process.hasExited == false
        #expect(alive)
        #expect(try process.commandLine().contains("-uuid"))
        Self.kill(child)
        let exited = process.hasExited
        #expect(exited)
        #expect(throws: UnmappableReason.processGone) { try process.commandLine() }
        #expect(throws: UnmappableReason.processGone) { try process.openRAMRegions() }
    }

    @Test func findsALibvirtGuestByPidFile() throws {
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("samepage-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: run) }
        let uuid = UUID()
        let name = "web,1"
        let child = try Self.fakeQEMU(name: name, uuid: uuid)
        defer { Self.kill(child) }
        try "\(child.processIdentifier)\n".write(to: run.appendingPathComponent("\(name).pid"), atomically: true, encoding: .utf8)

        let process = try QEMUProcess.libvirtGuest(name: name, uuid: uuid, runDirectory: run.path)
        let pid = process.pid
        #expect(pid == child.processIdentifier)
        // A pid file naming someone else's process, or no pid file at all.
        #expect(throws: UnmappableReason.processGone) { _ = try QEMUProcess.libvirtGuest(name: name, uuid: UUID(), runDirectory: run.path) }
        #expect(throws: UnmappableReason.processGone) { _ = try QEMUProcess.libvirtGuest(name: "web", uuid: uuid, runDirectory: run.path) }
    }

    @Test func commandLineMatching() {
        let uuid = UUID()
        let arguments = ["qemu", "-name", "guest=a,,b,debug-threads=on", "-uuid", uuid.uuidString.lowercased()]
        #expect(QEMUProcess.isCommandLine(arguments, ofGuest: "a,b", uuid: uuid))
        #expect(!QEMUProcess.isCommandLine(arguments, ofGuest: "a", uuid: uuid))
        #expect(!QEMUProcess.isCommandLine(arguments, ofGuest: "a,b", uuid: UUID()))
        #expect(QEMUProcess.isCommandLine(["-name", "guest=x", "-uuid", uuid.uuidString], ofGuest: "x", uuid: uuid))
    }

    /// The whole path on this test process: its own memfd found by size, with no QEMU
    /// command line, opened through map_files.
    @Test func opensRegionsOfAProcess() throws {
        let guest = try FakeGuestRAM(pages: 77)
        guest.fill(page: 3, with: 1)
        let process = try QEMUProcess(pid: getpid())
        let regions = try process.openRAMRegions(expecting: [ExpectedRegion(backendID: "memdimm7", size: 77 * 4096)])
        let region = try #require(regions.first)
        let file = try guest.mapping().file
        #expect(regions.count == 1 && region.backendID == "memdimm7" && region.file == file)
        try region.ensureStillSameBackend()
        // No memory-backend objects on this process's command line and no shared mapping of
        // the size: what QEMU with plain `-m` RAM looks like.
        #expect(throws: UnmappableReason.anonymousRAM(backend: nil)) {
            try process.openRAMRegions(expecting: [ExpectedRegion(backendID: nil, size: 79 * 4096)])
        }
    }
}

import Foundation
import Glibc
@testable import GuestMemory
import LinuxSystem
import Testing

/// A fake proc root: `ROOT/PID/stat` and `ROOT/PID/maps` written by the test.
private final class FakeProc {
    let root = "/tmp/samepage-fakeproc-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"

    init() { mkdir(root, 0o700) }
    deinit { try? FileManager.default.removeItem(atPath: root) }

    func process(_ pid: pid_t, start: UInt64, vsize: UInt64, maps: String) {
        mkdir("\(root)/\(pid)", 0o700)
        // Field 2 holds spaces and a parenthesis, as a command may.
        let stat = "\(pid) (odd (name) x) S 1 \(pid) \(pid) 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 \(start) \(vsize) 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
        try! stat.write(toFile: "\(root)/\(pid)/stat", atomically: true, encoding: .utf8)
        try! maps.write(toFile: "\(root)/\(pid)/maps", atomically: true, encoding: .utf8)
    }

    func remove(_ pid: pid_t) { try? FileManager.default.removeItem(atPath: "\(root)/\(pid)") }
}

private let guestRAM = FileIdentity(deviceMajor: 0, deviceMinor: 1, inode: 4242)
private let guestMaps = """
    55d0c0000000-55d0c0100000 r-xp 00000000 08:01 1234 /usr/bin/qemu-system-x86_64
    7f0000000000-7f0010000000 rw-s 00000000 00:01 4242 /memfd:pc.ram (deleted)
    7f0010000000-7f0010001000 rw-s 00000000 00:0e 99 anon_inode:kvm-vcpu:0
    7f0010001000-7f0010002000 rw-p 00000000 00:00 0
    """

@Suite("Process mapping index")
struct ProcessMappingIndexTests {
    @Test("stat's start time and virtual size are read after the command's last parenthesis")
    func statFields() {
        let line = Array("77 (a) b) c) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 123456789 0\n".utf8)
        let fields = ProcessMappingIndex.startAndSize(line)
        #expect(fields?.startTime == 987654)
        #expect(fields?.virtualSize == 123456789)
        #expect(ProcessMappingIndex.startAndSize(Array("77 (truncated".utf8)) == nil)
    }

    @Test("Only shared file mappings count, not private ones, anonymous memory or anon inodes")
    func sharedFilesOfMaps() {
        let files = ProcessMappingIndex.sharedFiles(inMaps: Array(guestMaps.utf8))
        #expect(files == [guestRAM])
    }

    @Test("maps is read for new and changed processes only, and every process within the rotation")
    func readsOnlyWhatChanged() {
        let proc = FakeProc()
        proc.process(100, start: 10, vsize: 4096, maps: guestMaps)
        proc.process(200, start: 20, vsize: 8192, maps: "")
        let index = ProcessMappingIndex(procRoot: proc.root, fullPassEvery: 4)
        let first = index.refresh()
        #expect(first.processes == 2)
        #expect(first.mapsRead == 2)
        #expect(index.processes(mappingAny: [guestRAM]) == [guestRAM: [100]])

        // Process 200 maps the guest's RAM without changing its size: not seen until its turn
        // in the rotation comes (within 4 passes), then seen.
        proc.process(200, start: 20, vsize: 8192, maps: guestMaps)
        var seenAfter: Int?
        var reads = 0
        for pass in 1...4 {
            reads += index.refresh().mapsRead
            if seenAfter == nil, index.processes(mappingAny: [guestRAM])[guestRAM] == [100, 200] { seenAfter = pass }
        }
        #expect(seenAfter != nil)
        // Four passes of the rotation read each unchanged process's maps once, not every pass.
        #expect(reads == 2)

        // A size change is seen at the next pass.
        proc.process(300, start: 30, vsize: 4096, maps: "")
        index.refresh()
        proc.process(300, start: 30, vsize: 1 << 30, maps: guestMaps)
        index.refresh()
        #expect(index.processes(mappingAny: [guestRAM])[guestRAM] == [100, 200, 300])

        // A pid reused by a new process (another start time) is read again; a process gone is dropped.
        proc.process(100, start: 11, vsize: 4096, maps: "")
        proc.remove(200)
        index.refresh()
        #expect(index.processes(mappingAny: [guestRAM])[guestRAM] == [300])
    }

    @Test("A process that cannot be inspected is reported, not skipped")
    func unreadableIsReported() throws {
        let proc = FakeProc()
        proc.process(100, start: 10, vsize: 4096, maps: guestMaps)
        mkdir("\(proc.root)/101", 0o700)
        // A stat that is a directory: EISDIR on read, as an unexpected error would be.
        mkdir("\(proc.root)/101/stat", 0o700)
        let pass = ProcessMappingIndex(procRoot: proc.root).refresh()
        #expect(pass.unreadable.keys.sorted() == [101])
        #expect(pass.processes == 2)
        #expect(pass.refused.isEmpty)
    }

    @Test("Refusals (EACCES, EPERM) are skipped; running out of descriptors or memory, or an I/O error, is not")
    func refusalsAndFailures() {
        #expect(ProcessMappingIndex.isRefusal(SystemError(errno: .permissionDenied, operation: "open")))
        #expect(ProcessMappingIndex.isRefusal(SystemError(errno: .notPermitted, operation: "open")))
        #expect(!ProcessMappingIndex.isRefusal(SystemError(errno: .tooManyOpenFiles, operation: "open")))
        #expect(!ProcessMappingIndex.isRefusal(SystemError(errno: .noMemory, operation: "read")))
        #expect(!ProcessMappingIndex.isRefusal(SystemError(errno: .ioError, operation: "read")))
    }

    @Test("The real /proc: this process's own shared mapping of a memfd is found")
    func realProc() throws {
        let fd = LinuxCalls.memfdCreate("samepage-index-test", 0)
        try #require(fd >= 0)
        defer { close(fd) }
        #expect(ftruncate(fd, 1 << 20) == 0)
        let address = mmap(nil, 1 << 20, PROT_READ, MAP_SHARED, fd, 0)
        try #require(address != MAP_FAILED)
        defer { munmap(address, 1 << 20) }
        var status = stat()
        #expect(fstat(fd, &status) == 0)
        let file = FileIdentity(status)
        let index = ProcessMappingIndex()
        let pass = index.refresh()
        #expect(pass.processes > 1)
        #expect(index.processes(mappingAny: [file])[file] == [getpid()])
    }
}

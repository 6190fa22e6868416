import Foundation
import Glibc
@testable import GuestMemory
import Logging
import SamepageCore
import Testing

@testable import SamepageAgent

@Suite("Punch ledger: page ranges and backends")
struct PunchLedgerTests {
    static let backend = PunchLedger.Backend(deviceMajor: 0, deviceMinor: 1, inode: 42, pid: 100, processStart: 7)

    @Test("ranges given in any order, overlapping or adjacent, become sorted and apart")
    func normalised() {
        let ranges = PageRanges([10..<12, 0..<3, 2..<5, 12..<14, 20..<20])
        #expect(ranges.ranges == [0..<5, 10..<14])
        #expect(ranges.count == 9)
    }

    @Test("a slice is relative to its window; a replace keeps what is outside the window")
    func sliceAndReplace() {
        var ranges = PageRanges([0..<4, 8..<12, 30..<32])
        #expect(ranges.slice(2..<10).ranges == [0..<2, 6..<8])
        // The window 2..<10 now holds its pages 5 and 7 (file pages 7 and 9); what is given past
        // its end is dropped, and file pages 10 and 11, outside it, are kept.
        ranges.replace(2..<10, with: PageRanges([5..<6, 7..<20]))
        #expect(ranges.ranges == [0..<2, 7..<8, 9..<12, 30..<32])
    }

    @Test("a backend's pages are recorded per window; an empty backend is not kept")
    func recordPerWindow() {
        var ledger = PunchLedger()
        var pages = PunchLedger.Pages()
        pages.held = PageRanges([0..<3])
        pages.hot = PageRanges([5..<6])
        ledger.record(pages, of: Self.backend, in: 100..<200)
        #expect(ledger.heldPages == 3)
        // Another mapping of the same file, starting 50 pages earlier, sees them 50 pages on.
        let seen = ledger.pages(of: Self.backend, in: 50..<150)
        #expect(seen.held.ranges == [50..<53])
        #expect(seen.hot.ranges == [55..<56])
        ledger.record(PunchLedger.Pages(), of: Self.backend, in: 0..<1000)
        #expect(ledger.backends.isEmpty)
    }

    @Test("the wire form reads back; ranges out of order or overlapping are refused")
    func wireForm() throws {
        var ledger = PunchLedger()
        ledger.record(PunchLedger.Pages(held: PageRanges([1..<4, 9..<10]), hot: PageRanges()), of: Self.backend, in: 0..<16)
        let data = try JSONEncoder().encode(ledger)
        #expect(try JSONDecoder().decode(PunchLedger.self, from: data) == ledger)
        let json = String(decoding: data, as: UTF8.self)
        #expect(json.contains(#""held":[[1,4],[9,10]]"#))
        for bad in ["[[4,1]]", "[[0,4],[3,8]]", "[[0,4],[4,8]]", "[[-1,2]]", "[[1,2,3]]"] {
            #expect(throws: DecodingError.self) { try JSONDecoder().decode(PageRanges.self, from: Data(bad.utf8)) }
        }
    }
}

/// A memfd standing in for a QEMU's guest RAM backend.
private final class Memfd {
    let descriptor: Int32

    init(pages: Int) throws {
        descriptor = LinuxCalls.memfdCreate("punch-ledger-test", 0)
        guard descriptor >= 0, ftruncate(descriptor, off_t(pages * pageSize)) == 0 else { throw POSIXError(.EIO) }
    }

    deinit { close(descriptor) }

    /// Maps file pages `pages` of the memfd shared in this process, as QEMU maps its RAM.
    func map(_ pages: Range<Int>) throws -> Mapping { try Mapping(self, pages) }

    final class Mapping {
        let address: UnsafeMutableRawPointer
        let length: Int

        fileprivate init(_ memfd: Memfd, _ pages: Range<Int>) throws {
            length = pages.count * pageSize
            guard let address = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.descriptor, off_t(pages.lowerBound * pageSize)),
                address != MAP_FAILED
            else { throw POSIXError(.ENOMEM) }
            self.address = address
        }

        deinit { munmap(address, length) }

        /// A guest region of this mapping, as the agent opens one of a QEMU.
        func region() throws -> GuestRegion {
            let start = UInt64(UInt(bitPattern: address))
            let mapping = try #require(try MemoryMapping.read(pid: getpid()).first { $0.addresses.lowerBound == start })
            return try GuestRegion(mapping: mapping, of: getpid(), backendID: "pc.ram")
        }
    }
}

@Suite("Punch records: what was punched outlives a mapping and a restart")
struct PunchRecordsTests {
    let directory: String
    let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("punch-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    func guest(_ regions: [GuestRegion]) -> TrackedGuest {
        let guest = TrackedGuest(libvirtDomain: "vm1", uuid: UUID(), id: 1, state: .running)
        guest.regions = regions
        return guest
    }

    @Test("holes of one mapping are restored, at their file pages, in a remap by a restarted agent")
    func restartAndRemap() throws {
        let file = PunchLedgerFile(path: directory + "/punched.json")
        let memfd = try Memfd(pages: 64)
        // The first mapping covers file pages 16..<48.
        let first = try memfd.map(16..<48)
        let before = guest([try first.region()])
        var held = PageSet(pageCount: 32)
        held.insert(2..<5)
        held.insert(10..<11)
        var hot = PageSet(pageCount: 32)
        hot.insert(7..<8)
        before.reclaimState.held[0] = held
        before.reclaimState.hot[0] = hot
        let records = PunchRecords(file: file, logger: logger)
        records.record(before)
        records.saveIfDue(at: .now, force: true)
        #expect(records.heldPages == 4)

        // A new samepaged reads the file; the guest's RAM is now mapped whole (file pages 0..<64).
        let restarted = PunchRecords(file: file, logger: logger)
        #expect(restarted.heldPages == 4)
        let whole = try memfd.map(0..<64)
        let after = guest([try whole.region()])
        restarted.restore(after)
        #expect(after.reclaimState.held[0]?.ranges == [18..<21, 26..<27])
        #expect(after.reclaimState.hot[0]?.ranges == [23..<24])
        #expect(after.reclaimState.heldPages == 4)
    }

    @Test("a repopulated range leaves the ledger; an unchanged guest is not recorded again")
    func repopulatedLeaves() throws {
        let file = PunchLedgerFile(path: directory + "/punched.json")
        let memfd = try Memfd(pages: 16)
        let mapping = try memfd.map(0..<16)
        let tracked = guest([try mapping.region()])
        var held = PageSet(pageCount: 16)
        held.insert(0..<8)
        tracked.reclaimState.held[0] = held
        let records = PunchRecords(file: file, logger: logger)
        records.record(tracked)
        #expect(records.heldPages == 8)
        held.remove(0)
        held.remove(1)
        tracked.reclaimState.held[0] = held
        records.record(tracked)
        #expect(records.heldPages == 6)
    }

    @Test("backends of a QEMU that is gone are forgotten when the ledger is read")
    func goneQEMUForgotten() throws {
        let path = directory + "/punched.json"
        // pid 2^22 + 1 is above Linux's pid_max limit: no process has it.
        let json = #"{"format":1,"backends":[{"backend":{"device_major":0,"device_minor":1,"inode":5,"pid":4194305,"process_start":1},"pages":{"held":[[0,10]],"hot":[]}}]}"#
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        let records = PunchRecords(file: PunchLedgerFile(path: path), logger: logger)
        #expect(records.heldPages == 0)
    }

    @Test("an unreadable ledger is set aside, and the agent starts with an empty one")
    func unreadableSetAside() throws {
        let path = directory + "/punched.json"
        try #"{"format":1,"backends":[{"backend":"#.write(toFile: path, atomically: true, encoding: .utf8)
        let records = PunchRecords(file: PunchLedgerFile(path: path), logger: logger)
        #expect(records.heldPages == 0)
        #expect(FileManager.default.fileExists(atPath: path + ".unreadable"))
        #expect(!FileManager.default.fileExists(atPath: path))
    }
}

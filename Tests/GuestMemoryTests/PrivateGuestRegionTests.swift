import Foundation
import Glibc
@testable import GuestMemory
import SamepageCore
import Testing

@Suite(.serialized) struct PrivateGuestRegionTests {
    func residency(_ region: PrivateGuestRegion, _ pages: Range<Int>) throws -> [Int] {
        var vector = [UInt8](repeating: 0xfe, count: pages.count)
        try vector.withUnsafeMutableBufferPointer { try region.residency(of: pages, into: $0) }
        return vector.indices.filter { vector[$0] & 1 != 0 }.map { $0 + pages.lowerBound }
    }

    /// Anonymous memory of this process, mapped for one test.
    final class OwnMemory {
        let base: UnsafeMutableRawPointer
        let pages: Int
        init(pages: Int) throws {
            self.pages = pages
            base = try #require(mmap(nil, pages * pageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
            guard base != MAP_FAILED else { throw SystemError("mmap") }
            _ = madvise(base, pages * pageSize, MADV_NOHUGEPAGE)
        }
        deinit { munmap(base, pages * pageSize) }
        func page(_ page: Int) -> UnsafeMutableRawPointer { base + page * pageSize }

        func region(_ copyMethod: PrivateCopyMethod = .processVMReadv) throws -> PrivateGuestRegion {
            let start = UInt64(UInt(bitPattern: base))
            var mapping = try #require(try MemoryMapping.read(pid: getpid()).first { $0.addresses.contains(start) })
            mapping.addresses = start..<(start + UInt64(pages * pageSize))
            return try PrivateGuestRegion(mapping: mapping, of: getpid(), backendID: "pc.ram",
                                          processDescriptor: LinuxCalls.pidfdOpen(getpid()), copyMethod: copyMethod)
        }
    }

    @Test(arguments: [PrivateCopyMethod.processVMReadv, .procMem])
    func ownMemory(copyMethod: PrivateCopyMethod) throws {
        let memory = try OwnMemory(pages: 256)
        let written: [Int: UInt64] = [0: 11, 7: 12, 8: 13, 9: 14, 100: 15, 200: 0, 255: 16]
        for (page, id) in written { writePrivatePattern(id, at: memory.page(page)) }
        let region = try memory.region(copyMethod)
        #expect(region.kind == .anonymous && region.pageCount == 256 && region.size == 256 * pageSize)
        #expect(region.copyMethod == copyMethod)

        #expect(try residency(region, 0..<256) == written.keys.sorted())
        #expect(try residency(region, 6..<101) == [7, 8, 9, 100])
        let scan = try scanLikeTheEngine(region, written: written)
        #expect(scan.resident == written.keys.sorted() && scan.wrong.isEmpty)
        #expect(region.copyMethod == copyMethod)  // process_vm_readv was not refused.

        // A page the guest gave back (the balloon's MADV_DONTNEED) is not resident, and a run
        // holding it is not read: reading would map the zero page there.
        #expect(madvise(memory.page(8), pageSize, MADV_DONTNEED) == 0)
        #expect(try residency(region, 7..<10) == [7, 9])
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 3 * pageSize, alignment: pageSize)
        defer { buffer.deallocate() }
        #expect(throws: NoLongerResident(pages: 7..<10)) { try region.read(7..<10, into: buffer) }
        #expect(try residency(region, 8..<9) == [])
        try region.read(9..<10, into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<pageSize]))
        #expect(holdsPrivatePattern(14, at: buffer.baseAddress!))

        // A page swapped out. Without swap the kernel keeps anonymous pages in RAM (and says
        // nothing): mincore of our own page tells whether it left.
        guard madvise(memory.page(100), pageSize, 21 /* MADV_PAGEOUT */) == 0 else {
            print("note: MADV_PAGEOUT failed (errno \(errno)); the swapped-page check is skipped")
            return
        }
        var inCore: UInt8 = 0
        #expect(mincore(memory.page(100), pageSize, &inCore) == 0)
        if inCore & 1 != 0 {
            print("note: MADV_PAGEOUT left the page in RAM (no swap on this host); the swapped-page check is skipped")
        } else {
            #expect(try residency(region, 99..<102) == [])
            #expect(throws: NoLongerResident(pages: 100..<101)) {
                try region.read(100..<101, into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<pageSize]))
            }
        }
    }

    /// The read path over a large, mostly untouched mapping of another process, anonymous or
    /// a tmpfs file mapped private (libvirt's memory_backing_dir with access private): it sees
    /// exactly the written pages, reads their content, and leaves the process's memory as it
    /// was. The end shows that the witnesses would have caught a read of an untouched page.
    @Test(arguments: [false, true])
    func childMemoryIsReadWithoutGrowingIt(privateFile: Bool) throws {
        let pages = 16384  // 64 MiB, 169 pages written.
        var written: [Int: UInt64] = [:]
        for page in stride(from: 3, to: pages, by: 97) { written[page] = UInt64(page + 1) }
        written[5000] = 0  // Written with zeroes: allocated, so resident.
        let file = privateFile ? "/dev/shm/samepage-private-\(getpid())-\(UInt32.random(in: 0...UInt32.max))" : nil
        let child = try PrivateGuestProcess(pages: pages, written: written, file: file)
        let region = try child.region()
        #expect(region.kind == (privateFile ? .privateFile(path: file, file: try child.mapping().file) : .anonymous))

        let residentBefore = try child.residentKiB()
        let presentBefore = try child.presentPages()
        #expect(presentBefore == written.count)
        for copyMethod in [PrivateCopyMethod.processVMReadv, .procMem] {
            let scan = try scanLikeTheEngine(try child.region(copyMethod), written: written)
            #expect(scan.resident == written.keys.sorted(), "\(copyMethod)")
            #expect(scan.wrong.isEmpty, "\(copyMethod): wrong content in \(scan.wrong.prefix(5))")
        }
        #expect(try child.residentKiB() == residentBefore)
        #expect(try child.presentPages() == presentBefore)
        try region.ensureStillMapped()

        // The control: one plain copy of an untouched page, as a reader without the pagemap
        // check would make, is seen by the witnesses.
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: pageSize)
        defer { page.deallocate() }
        #expect(try LinuxCalls.processVMRead(child.pid, into: page, at: child.address + UInt64(pageSize)) == pageSize)
        #expect(try child.presentPages() == presentBefore + 1)
        if privateFile {
            #expect(try child.residentKiB() > residentBefore)  // The file's page, now mapped.
        }
    }

    @Test func anExitedProcessIsReportedAsExited() throws {
        let child = try PrivateGuestProcess(pages: 64, written: [1: 7])
        let region = try child.region()
        let mapping = try child.mapping()
        #expect(try residency(region, 0..<64) == [1])
        #expect(!region.hasExited)
        child.kill()
        #expect(region.hasExited)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: pageSize)
        defer { buffer.deallocate() }
        #expect(throws: BackendError.processExited(backend: "pc.ram")) { _ = try residency(region, 0..<64) }
        #expect(throws: BackendError.processExited(backend: "pc.ram")) { try region.read(1..<2, into: buffer) }
        #expect(throws: BackendError.processExited(backend: "pc.ram")) { try region.ensureStillMapped() }
        #expect(throws: BackendError.processExited(backend: "pc.ram")) {
            _ = try PrivateGuestRegion(mapping: mapping, of: child.pid, backendID: "pc.ram")
        }
    }

    @Test func unmappedMemoryIsNoticed() throws {
        let memory = try OwnMemory(pages: 64)
        writePrivatePattern(3, at: memory.page(40))
        let region = try memory.region()
        try region.ensureStillMapped()
        // Half of it unmapped, as a DIMM unplugged: pagemap alone would just see no pages.
        #expect(munmap(memory.page(32), 32 * pageSize) == 0)
        #expect(try residency(region, 0..<64) == [])
        #expect(throws: BackendError.unmapped(backend: "pc.ram", address: UInt64(UInt(bitPattern: memory.page(32))))) {
            try region.ensureStillMapped()
        }
        _ = mmap(memory.page(32), 32 * pageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
    }

    /// QEMU's view of a guest with plain `-m` RAM: no memory-backend objects, one anonymous
    /// area of the RAM's size. The plan finds it and opens it as private memory; callers that
    /// need shared memory are still told it is anonymous.
    @Test func aProcessWithAnonymousRAMIsPlannedAndOpened() throws {
        let pages = 3001
        let written: [Int: UInt64] = [0: 1, 1500: 2, 3000: 3]
        let child = try PrivateGuestProcess(pages: pages, written: written)
        let process = try QEMUProcess(pid: child.pid)
        let expected = [ExpectedRegion(backendID: nil, size: pages * pageSize)]
        let plan = try process.planRAM(expecting: expected)
        #expect(plan == [RAMPlanEntry(backendID: "ram0", pid: child.pid, mapping: try #require(plan.first?.mapping), placement: .privateMemory)])
        #expect(plan.first?.mapping.addresses == child.addresses)

        let regions = try process.openRAM(expecting: expected)
        guard regions.count == 1, case .private(let region) = regions[0] else { Issue.record("\(regions)"); return }
        #expect(regions[0].sharedRegion == nil && regions[0].backendID == "ram0" && regions[0].size == pages * pageSize)
        #expect(region.processAddresses == child.addresses)
        let scan = try scanLikeTheEngine(region, written: written)
        #expect(scan.resident == written.keys.sorted() && scan.wrong.isEmpty)
        #expect(throws: UnmappableReason.anonymousRAM(backend: nil)) { try process.openRAMRegions(expecting: expected) }
    }

    /// Two guests with private RAM of the same content, scanned by the engine through
    /// PrivateGuestRegions: what it counts as sharing is what was written, counted by hand.
    @Test func theEngineMergesTwoPrivateGuests() throws {
        // Both: contents 1..5 once each, and 9 twice; zeroes in page 40. Only a: 6 and 7;
        // only b: 8. Pages 60..63 untouched.
        let common: [Int: UInt64] = [0: 1, 1: 2, 2: 3, 10: 4, 11: 5, 20: 9, 21: 9, 40: 0]
        let a = try PrivateGuestProcess(pages: 64, written: common.merging([30: 6, 31: 7]) { $1 })
        let b = try PrivateGuestProcess(pages: 64, written: common.merging([30: 8]) { $1 })
        let engine = try Engine(tunables: Tunables(pagesToScan: 1000, smartScan: false))
        let group = engine.trustGroup(named: "web")
        for (name, child) in [("a", a), ("b", b)] {
            _ = try #require(engine.addSlot(try child.region(), options: SlotOptions(name: name, trustGroup: group, merging: true, maxPages: 0)))
        }
        var failures: [SlotFailure] = []
        while engine.counters.fullScans < 4 { failures += engine.scanBatch(endingFullScans: true).failures }
        #expect(failures.isEmpty)
        #expect(engine.invariantViolations().isEmpty)
        // Contents 1-5: two copies each (1 shared + 1 sharing). Content 9: four copies (1 + 3).
        // 6, 7, 8: one copy each, unshared. Zero pages: one per guest, counted apart.
        let counters = engine.counters
        #expect(counters.pagesShared == 6)
        #expect(counters.pagesSharing == 5 + 3)
        #expect(counters.pagesUnshared == 3)
        #expect(counters.zeroPages == 2)
    }
}

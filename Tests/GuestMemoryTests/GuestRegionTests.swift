import Foundation
import Glibc
import SamepageCore
import Testing
@testable import GuestMemory

/// A memfd mapped shared in this process, standing in for a guest's RAM in QEMU.
final class FakeGuestRAM {
    let descriptor: Int32
    let size: Int
    let address: UnsafeMutableRawPointer

    init(pages: Int, hugetlb: Bool = false) throws {
        size = pages * pageSize
        descriptor = LinuxCalls.memfdCreate("fake-guest-ram", hugetlb ? 4 /* MFD_HUGETLB */ : 0)
        guard descriptor >= 0 else { throw SystemError("memfd_create") }
        guard ftruncate(descriptor, off_t(size)) == 0 else { throw SystemError("ftruncate") }
        guard let address = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, descriptor, 0), address != MAP_FAILED else {
            throw SystemError("mmap")
        }
        self.address = address
    }

    deinit {
        munmap(address, size)
        close(descriptor)
    }

    /// Writes `byte` all over a page, as the guest would.
    func fill(page: Int, with byte: UInt8) {
        memset(address + page * pageSize, Int32(byte), pageSize)
    }

    /// This process's maps line for the mapping.
    func mapping() throws -> MemoryMapping {
        try #require(MemoryMapping.read(pid: getpid()).first { $0.addresses.lowerBound == UInt64(UInt(bitPattern: address)) })
    }

    func allocatedBlocks() -> Int {
        var status = stat()
        fstat(descriptor, &status)
        return status.st_blocks
    }
}

@Suite struct GuestRegionTests {
    static let pages = 64
    static let written = [0, 5, 17, 63]

    func makeGuest(pages: Int = pages) throws -> (FakeGuestRAM, GuestRegion) {
        let guest = try FakeGuestRAM(pages: pages)
        for page in Self.written { guest.fill(page: page, with: UInt8(page + 1)) }
        let region = try GuestRegion(mapping: guest.mapping(), of: getpid(), backendID: "pc.ram")
        return (guest, region)
    }

    func residency(_ region: GuestRegion, _ pages: Range<Int>) throws -> [Int] {
        var vector = [UInt8](repeating: 0xfe, count: pages.count)
        try vector.withUnsafeMutableBufferPointer { try region.residency(of: pages, into: $0) }
        return vector.indices.filter { vector[$0] & 1 != 0 }.map { $0 + pages.lowerBound }
    }

    @Test func opensAMemfdThroughMapFiles() throws {
        let (guest, region) = try makeGuest()
        let mapping = try guest.mapping()
        #expect(region.kind == .memfd)
        #expect(region.pageCount == Self.pages && region.size == Self.pages * pageSize && region.fileOffset == 0)
        #expect(region.file == mapping.file && region.path == "/memfd:fake-guest-ram")
        #expect(region.pid == getpid() && region.processAddresses == mapping.addresses)
        #expect(region.access == .readOnly)
        #expect(fcntl(region.descriptor.rawValue, F_GETFL) & O_ACCMODE == O_RDONLY)
        let writable = try GuestRegion(mapping: mapping, of: getpid(), backendID: "pc.ram", access: .readWrite)
        #expect(fcntl(writable.descriptor.rawValue, F_GETFL) & O_ACCMODE == O_RDWR)
    }

    @Test func residencyReportsOnlyWrittenPages() throws {
        let (_, region) = try makeGuest()
        #expect(try residency(region, 0..<Self.pages) == Self.written)
        #expect(try residency(region, 4..<18) == [5, 17])
        #expect(try residency(region, 6..<17) == [])
    }

    @Test func readsContents() throws {
        let (guest, region) = try makeGuest()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 3 * pageSize, alignment: pageSize)
        defer { buffer.deallocate() }
        try region.read(4..<7, into: buffer)
        #expect(buffer[0..<pageSize].allSatisfy { $0 == 0 })
        #expect(buffer[pageSize..<(2 * pageSize)].allSatisfy { $0 == 6 })
        #expect(buffer[(2 * pageSize)...].allSatisfy { $0 == 0 })
        // The guest changes a page; the next read sees it.
        guest.fill(page: 5, with: 0xaa)
        try region.read(page: 5, into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<pageSize]))
        #expect(buffer[..<pageSize].allSatisfy { $0 == 0xaa })
    }

    @Test func scanningAllocatesNothing() throws {
        let (guest, region) = try makeGuest(pages: 1024)
        let before = guest.allocatedBlocks()
        #expect(before == Self.written.count * pageSize / 512)
        #expect(try region.allocatedBytes() == Self.written.count * pageSize)

        // What the engine does (residency, then reads of resident runs), and worse: reads of
        // every hole too.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * pageSize, alignment: pageSize)
        defer { buffer.deallocate() }
        var resident: [Int] = []
        for start in stride(from: 0, to: region.pageCount, by: 64) {
            resident += try residency(region, start..<(start + 64))
            try region.read(start..<(start + 64), into: buffer)
        }
        #expect(resident == Self.written)
        #expect(guest.allocatedBlocks() == before)
        #expect(try residency(region, 0..<region.pageCount) == Self.written)
    }

    @Test func truncatedBackendThrowsInsteadOfCrashing() throws {
        let (guest, region) = try makeGuest()
        try region.ensureStillSameBackend()
        #expect(ftruncate(guest.descriptor, off_t(10 * pageSize)) == 0)

        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8 * pageSize, alignment: pageSize)
        defer { buffer.deallocate() }
        try region.read(2..<10, into: buffer)  // Still inside the file.
        #expect(throws: BackendError.truncated(backend: "pc.ram", regionEnd: 18 * pageSize, fileSize: 10 * pageSize)) {
            try region.read(page: 17, into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<pageSize]))
        }
        // A run that starts inside and ends outside is a short read.
        #expect(throws: BackendError.truncated(backend: "pc.ram", regionEnd: 14 * pageSize, fileSize: 10 * pageSize)) {
            try region.read(6..<14, into: buffer)
        }
        // Residency inside the file still works; past its end it reports the truncation
        // rather than holes, and never faults.
        #expect(try residency(region, 0..<10) == [0, 5])
        #expect(throws: BackendError.truncated(backend: "pc.ram", regionEnd: Self.pages * pageSize, fileSize: 10 * pageSize)) {
            try residency(region, 8..<Self.pages)
        }
        #expect(throws: BackendError.sizeChanged(backend: "pc.ram", from: Self.pages * pageSize, to: 10 * pageSize)) {
            try region.ensureStillSameBackend()
        }
    }

    @Test func findsEveryProcessMappingABackend() throws {
        let guest = try FakeGuestRAM(pages: 3)
        #expect(MemoryMapping.processes(mapping: try guest.mapping().file) == [getpid()])
    }

    @Test func refusesAMappingOfAnotherFile() throws {
        let guest = try FakeGuestRAM(pages: 4)
        var mapping = try guest.mapping()
        mapping.file.inode += 1
        #expect(throws: BackendError.self) { try GuestRegion(mapping: mapping, of: getpid(), backendID: "pc.ram") }
        mapping.addresses = 0x1000..<0x2000  // Nothing mapped there.
        let error = #expect(throws: BackendError.self) { try GuestRegion(mapping: mapping, of: getpid(), backendID: "pc.ram") }
        guard case .system(let system) = error else { Issue.record("\(String(describing: error))"); return }
        #expect(system.errno == .noSuchFileOrDirectory)
    }

    @Test func releasesTheBackendWhenDropped() throws {
        let guest = try FakeGuestRAM(pages: 4)
        var region: GuestRegion? = try GuestRegion(mapping: guest.mapping(), of: getpid(), backendID: "pc.ram")
        let descriptor = try #require(region?.descriptor.rawValue)
        let file = try guest.mapping().file
        let mapsBefore = try MemoryMapping.read(pid: getpid()).filter { $0.file == file }.count
        #expect(mapsBefore == 2)  // The guest's own mapping and the region's untouched one.
        region = nil
        // Closed: the number is free, or (tests run in parallel) another file's by now.
        var status = stat()
        #expect(fstat(descriptor, &status) == -1 ? errno == EBADF : UInt64(status.st_ino) != file.inode)
        #expect(try MemoryMapping.read(pid: getpid()).filter { $0.file == file }.count == 1)
    }

    /// hugetlbfs residency comes from the mapping process's pagemap. Needs free huge pages
    /// (`echo 8 > /proc/sys/vm/nr_hugepages`); skipped otherwise.
    @Test(.enabled(if: freeHugePages() >= 4)) func hugetlbfsBackend() throws {
        let hugePage = 2 << 20
        let guest = try FakeGuestRAM(pages: 4 * hugePage / pageSize, hugetlb: true)
        guest.fill(page: hugePage / pageSize + 3, with: 9)  // Allocates the second huge page.
        let region = try GuestRegion(mapping: guest.mapping(), of: getpid(), backendID: "ram-node0")
        #expect(region.kind == .hugetlbfs(pageSize: hugePage))
        let before = guest.allocatedBlocks()
        #expect(try residency(region, 0..<region.pageCount) == Array((hugePage / pageSize)..<(2 * hugePage / pageSize)))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: hugePage, alignment: pageSize)
        defer { buffer.deallocate() }
        for start in stride(from: 0, to: region.pageCount, by: hugePage / pageSize) {
            try region.read(start..<(start + hugePage / pageSize), into: buffer)
        }
        #expect(buffer.allSatisfy { $0 == 0 })
        #expect(guest.allocatedBlocks() == before)
    }
}

func freeHugePages() -> Int {
    let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
    let line = meminfo.split(separator: "\n").first { $0.hasPrefix("HugePages_Free:") }
    return line.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
}

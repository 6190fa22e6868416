import Glibc
@testable import GuestMemory
import SamepageCore
import Testing

@Suite struct HugePageLayoutTests {
    static let twoMiB = 2 << 20, oneGiB = 1 << 30
    /// 4 KiB pages in a 2 MiB and a 1 GiB huge page.
    static let per2M = 512, per1G = 262_144

    @Test("2 MiB pages, region at offset 0: only huge pages all of whose pages are candidates")
    func twoMiBAligned() {
        let layout = HugePageLayout(hugePageSize: Self.twoMiB, fileOffset: 0, pageCount: 4 * Self.per2M)
        #expect(layout.pagesPerHugePage == 512)
        // The second huge page whole; the fourth missing its last page.
        let candidates = Array(512..<1024) + Array(1536..<2047)
        #expect(layout.wholeHugePages(in: candidates) == [512..<1024])
        // In any order, with duplicates.
        #expect(layout.wholeHugePages(in: (Array(0..<512) + [7, 7, 300]).reversed()) == [0..<512])
        // One page missing in the middle.
        #expect(layout.wholeHugePages(in: Array(0..<200) + Array(201..<512)).isEmpty)
        // 512 candidates spanning two huge pages make neither whole.
        #expect(layout.wholeHugePages(in: Array(256..<768)).isEmpty)
        // Two whole adjacent huge pages, and the pages of a third around them not whole.
        #expect(layout.wholeHugePages(in: Array(500..<1536)) == [512..<1024, 1024..<1536])
        // Everything.
        #expect(layout.wholeHugePages(in: Array(0..<2048)) == [0..<512, 512..<1024, 1024..<1536, 1536..<2048])
        // Candidates outside the region are ignored, and cannot complete a huge page.
        #expect(layout.wholeHugePages(in: [-1, 2048, 5000]).isEmpty)
        #expect(layout.wholeHugePages(in: []).isEmpty)
    }

    @Test("2 MiB pages, region starting 1 MiB into a huge page: the huge pages cut by its ends are never whole")
    func twoMiBUnaligned() {
        // File bytes [1 MiB, 1 MiB + 6 MiB): huge page 0 is cut (region pages 0..<256), huge
        // pages 1 and 2 are whole (256..<768, 768..<1280), huge page 3 is cut (1280..<1536).
        let layout = HugePageLayout(hugePageSize: Self.twoMiB, fileOffset: 1 << 20, pageCount: 1536)
        #expect(layout.wholeHugePages(in: Array(0..<1536)) == [256..<768, 768..<1280])
        #expect(layout.wholeHugePages(in: Array(0..<256)).isEmpty)
        #expect(layout.wholeHugePages(in: Array(1280..<1536)).isEmpty)
        #expect(layout.wholeHugePages(in: Array(0..<512)).isEmpty)  // 512 pages, two huge pages.
        #expect(layout.wholeHugePages(in: Array(256..<768)) == [256..<768])
        #expect(layout.wholeHugePages(in: Array(257..<769)).isEmpty)
    }

    @Test("2 MiB pages, region at a later aligned offset: huge page boundaries follow the file, not the region")
    func twoMiBAlignedOffset() {
        let layout = HugePageLayout(hugePageSize: Self.twoMiB, fileOffset: 6 << 20, pageCount: 1024)
        #expect(layout.wholeHugePages(in: Array(0..<1024)) == [0..<512, 512..<1024])
        // A region that ends 4 KiB into its last huge page.
        let short = HugePageLayout(hugePageSize: Self.twoMiB, fileOffset: 2 << 20, pageCount: 513)
        #expect(short.wholeHugePages(in: Array(0..<513)) == [0..<512])
    }

    @Test("1 GiB pages")
    func oneGiB() {
        let layout = HugePageLayout(hugePageSize: Self.oneGiB, fileOffset: 0, pageCount: 2 * Self.per1G)
        #expect(layout.pagesPerHugePage == 262_144)
        #expect(layout.wholeHugePages(in: Array(0..<(2 * Self.per1G))) == [0..<262_144, 262_144..<524_288])
        var missingOne = Array(0..<Self.per1G)
        missingOne.remove(at: 100_000)
        #expect(layout.wholeHugePages(in: missingOne + Array(Self.per1G..<(2 * Self.per1G))) == [262_144..<524_288])
        #expect(layout.wholeHugePages(in: Array(1000..<(Self.per1G + 1000))).isEmpty)
        // A region starting 2 MiB into the file holds no whole 1 GiB page in 1 GiB of pages.
        let unaligned = HugePageLayout(hugePageSize: Self.oneGiB, fileOffset: 2 << 20, pageCount: Self.per1G)
        #expect(unaligned.wholeHugePages(in: Array(0..<Self.per1G)).isEmpty)
    }
}

@Suite struct ZeroPageReclaimTests {
    @Test("A region opened read-only refuses to reclaim or repopulate with notWritable, changing nothing")
    func readOnlyRegionThrows() throws {
        let guest = try FakeGuestRAM(pages: 8)
        for page in 0..<8 { guest.fill(page: page, with: 0) }  // Resident zero pages.
        let region = try GuestRegion(mapping: guest.mapping(), of: getpid(), backendID: "pc.ram", access: .readOnly)
        #expect(throws: BackendError.notWritable(backend: "pc.ram")) { try region.reclaimZeroPages(Array(0..<8)) }
        #expect(throws: BackendError.notWritable(backend: "pc.ram")) { try region.reclaimZeroPages([]) }
        #expect(throws: BackendError.notWritable(backend: "pc.ram")) { try region.repopulate(0..<8) }
        #expect(guest.allocatedBlocks() == 8 * pageSize / 512)
    }

    @Test("On a memfd, every resident zero candidate is punched and none is skipped for huge pages")
    func memfdUnchanged() throws {
        let guest = try FakeGuestRAM(pages: 16)
        for page in 0..<16 { guest.fill(page: page, with: page == 9 ? 1 : 0) }
        let region = try GuestRegion(mapping: guest.mapping(), of: getpid(), backendID: "pc.ram", access: .readWrite)
        #expect(region.hugePageLayout == nil)
        #expect(region.reclaimablePages(among: [3, 1, 3, 20, -1, 9]) == [1, 3, 9])
        let outcome = try region.reclaimZeroPages(Array(4..<12))
        #expect(outcome.pagesPunched == 7 && outcome.pagesChanged == 1 && outcome.pagesSkippedPartialHugePage == 0)
        #expect(outcome.punched == [4..<9, 10..<12] && outcome.ranges == 2)
        #expect(outcome.bytesFreed == 7 * pageSize)
        #expect(guest.allocatedBlocks() == 9 * pageSize / 512)
    }

    /// A real hugetlbfs reclaim: a hugetlb memfd (MFD_HUGETLB, which needs no hugetlbfs mount)
    /// of two 2 MiB huge pages. Needs two free huge pages of a 2 MiB default size (`echo 2 >
    /// /proc/sys/vm/nr_hugepages`); skipped otherwise. The test reserves nothing itself.
    @Test(.enabled(if: defaultHugePageKiB() == 2048 && freeHugePages() >= 2))
    func hugetlbfsPunchesOnlyWholeZeroHugePages() throws {
        let hugePage = 2 << 20, per = hugePage / pageSize
        let guest = try FakeGuestRAM(pages: 2 * per, hugetlb: true)
        guest.address.storeBytes(of: 0, as: UInt8.self)  // Allocates the first huge page, all zero.
        (guest.address + hugePage + 5 * pageSize + 17).storeBytes(of: 0x5a, as: UInt8.self)  // The second, one byte set.
        #expect(guest.allocatedBlocks() == 2 * hugePage / 512)
        let region = try GuestRegion(mapping: guest.mapping(), of: getpid(), backendID: "ram-node0", access: .readWrite)
        #expect(region.hugePageLayout == HugePageLayout(hugePageSize: hugePage, fileOffset: 0, pageCount: 2 * per))
        #expect(region.reclaimablePages(among: Array(1..<(2 * per))) == Array(per..<(2 * per)))

        // Half of the first huge page's pages: nothing to punch.
        let partial = try region.reclaimZeroPages(Array(0..<(per / 2)))
        #expect(partial.pagesPunched == 0 && partial.pagesSkippedPartialHugePage == per / 2 && partial.bytesFreed == 0)

        let outcome = try region.reclaimZeroPages(Array(0..<(2 * per)))
        #expect(outcome.pagesPunched == per && outcome.pagesChanged == per && outcome.pagesSkippedPartialHugePage == 0)
        #expect(outcome.punched == [0..<per] && outcome.ranges == 1)
        #expect(outcome.bytesFreed == hugePage)
        #expect((guest.address + hugePage + 5 * pageSize + 17).load(as: UInt8.self) == 0x5a)
    }
}

func defaultHugePageKiB() -> Int {
    let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
    let line = meminfo.split(separator: "\n").first { $0.hasPrefix("Hugepagesize:") }
    return line.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
}

import Foundation
import SamepageCore
import SamepageModel
import Testing

@Suite("Savings in bytes") struct SavingsTests {
    @Test(arguments: [
        (0, "0 B"), (512, "512 B"), (1023, "1023 B"), (1024, "1 KiB"), (4096, "4 KiB"), (1536, "1.5 KiB"),
        (148_373_504, "141.5 MiB"), (512 << 20, "512 MiB"), (3 << 29, "1.5 GiB"), (5 << 40, "5 TiB"),
    ])
    func formatsInBinaryUnits(bytes: Int, text: String) {
        #expect(Savings.format(bytes: bytes) == text)
    }

    static let ram = RegionStatus(backend: "pc.ram", kind: "memfd", path: nil, bytes: 512 << 20, pages: 131_072)

    /// A shared-memory guest, eligible: 10 MiB reclaimed, 256 pages (1 MiB) refaulted, 2,304
    /// pages (9 MiB) still holes, 512 pages (2 MiB) pending, 3 MiB of attributed sharing.
    static func guest(eligible: Bool = true, privateRAM: Bool = false) -> GuestStatus {
        var reclaim = ReclaimStatus()
        reclaim.eligible = eligible
        reclaim.bytesReclaimed = 10 << 20
        reclaim.zeroPagesRefaulted = 256
        reclaim.pagesHeld = 2_304
        reclaim.pendingPages = 512
        var g = GuestStatus(name: "g", uuid: "u", state: "running", mapped: true, mode: .merge, regions: [ram], reclaim: reclaim)
        g.attributedSharingBytes = 3 << 20
        g.privateRAM = privateRAM
        return g
    }

    @Test func aGuestsFiguresInOrderNetOfRefaultsWithTheGrossBeside() {
        let s = Self.guest().savings
        #expect(s.freedBytes == 9 << 20)  // 10 MiB − 1 MiB, and 2,304 × 4 KiB held
        #expect(s.reclaimedBytes == 10 << 20)
        #expect(s.refaultedBytes == 1 << 20)
        #expect(s.freeableBytes == 2 << 20)
        #expect(s.kernelMergedBytes == nil)
        #expect(s.privateRAMOnlyBytes == 3 << 20)
        #expect(s.summary == "freed now 9 MiB (gross 10 MiB, refaulted 1 MiB), freeable now 2 MiB, duplicates only private RAM could realise 3 MiB, of 512 MiB guest RAM")
    }

    @Test func freedIsNeverMoreThanThePagesStillHoles() {
        var g = Self.guest()
        g.reclaim.pagesHeld = 0  // `run unmerge` allocated them again
        #expect(g.savings.freedBytes == 0)
        g.reclaim.pagesHeld = 100
        #expect(g.savings.freedBytes == 409_600)
    }

    @Test func freedIsNeverNegative() {
        var g = Self.guest()
        g.reclaim.bytesReclaimed = 4096  // a punch inside a transparent huge page freed one page
        g.reclaim.zeroPagesRefaulted = 2
        #expect(g.savings.freedBytes == 0)
    }

    @Test func anIneligibleGuestHasNothingFreeable() {
        #expect(Self.guest(eligible: false).savings.freeableBytes == 0)
    }

    /// On hugetlbfs (2 MiB pages), 3 all-zero huge pages hold 1,536 base pages: of 2,000
    /// pending, 1,536 × 4 KiB = 6 MiB can be freed; of 512 pending, all 512 (2 MiB).
    @Test func onHugetlbfsOnlyTheAllZeroHugePagesAreFreeable() {
        var g = Self.guest()
        g.hugePageZeroes = HugePageZeroes(pagesPerHugePage: 512, hugePages: 64, allZero: 3, partlyZero: 4, strandedZeroPages: 900)
        g.reclaim.pendingPages = 2_000
        #expect(g.savings.freeableBytes == 6 << 20)
        g.reclaim.pendingPages = 512
        #expect(g.savings.freeableBytes == 2 << 20)
    }

    @Test func aPrivateRAMGuestsDuplicatesAreTheKernelsNotCountedAsOnlyPrivateRAMsOwn() {
        var g = Self.guest(privateRAM: true)
        g.kernelKSM = GuestKernelKSM(mergeable: true, mergingPages: 1000, zeroPages: 280)  // 1,280 × 4 KiB = 5 MiB
        let s = g.savings
        #expect(s.privateRAMOnlyBytes == nil)
        #expect(s.kernelMergedBytes == 5 << 20)
        #expect(s.summary == "freed now 9 MiB (gross 10 MiB, refaulted 1 MiB), freeable now 2 MiB, merged by the kernel 5 MiB, of 512 MiB guest RAM")
    }

    @Test func theHostsIsTheSumOfItsGuestsWithSamepagedsCost() {
        var other = Self.guest(privateRAM: true)
        other.kernelKSM = GuestKernelKSM(mergingPages: 1280)
        let host = Savings.host([Self.guest(), other], agent: AgentCost(residentBytes: 86 << 20, cpuSeconds: 12, cpuRatio: 0.021))
        #expect(host.guestRAMBytes == 1 << 30)
        #expect(host.freedBytes == 18 << 20)
        #expect(host.freeableBytes == 4 << 20)
        #expect(host.kernelMergedBytes == 5 << 20)
        #expect(host.privateRAMOnlyBytes == 3 << 20)
        #expect(host.summary == "freed now 18 MiB (gross 20 MiB, refaulted 2 MiB), freeable now 4 MiB, merged by the kernel 5 MiB, duplicates only private RAM could realise 3 MiB, of 1 GiB guest RAM; samepaged 86 MiB RSS, 2.1% CPU")
    }

    @Test func samepagedsCPUIsLeftOutUntilKnown() {
        let host = Savings.host([], agent: AgentCost(residentBytes: 1 << 20, cpuSeconds: 0))
        #expect(host.summary.hasSuffix("of 0 B guest RAM; samepaged 1 MiB RSS"))
    }

    @Test func theWireFormNamesEveryFigureInBytes() throws {
        let data = try JSONEncoder().encode(Self.guest().savings)
        let object = try #require(JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["freed_bytes"] as? Int == 9_437_184)
        #expect(object["reclaimed_bytes"] as? Int == 10_485_760)
        #expect(object["refaulted_bytes"] as? Int == 1_048_576)
        #expect(object["freeable_bytes"] as? Int == 2_097_152)
        #expect(object["private_ram_only_sharing_bytes"] as? Int == 3_145_728)
        #expect(object["kernel_merged_bytes"] is NSNull)
        #expect(try JSONDecoder().decode(Savings.self, from: data) == Self.guest().savings)
    }
}

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

    @Test func aGuestsSummaryLeadsWithSharingAsAShareOfItsRAM() {
        var counters = Counters()
        counters.pagesSharing = 36_224  // × 4096 = 148,373,504 B = 141.5 MiB
        counters.zeroPages = 21_530  // × 4096 = 88,186,880 B = 84.1 MiB
        var reclaim = ReclaimStatus()
        reclaim.pagesHeld = 819  // × 4096 = 3,354,624 B = 3.2 MiB
        reclaim.zeroPagesReclaimed = 5000  // not held any more: not counted
        let region = RegionStatus(backend: "pc.ram", kind: "memfd", path: nil, bytes: 512 << 20, pages: 131_072)
        let guest = GuestStatus(name: "g", uuid: "u", state: "running", mapped: true, mode: .merge, counters: counters, regions: [region], reclaim: reclaim)
        let savings = Savings(guest)
        #expect(savings.sharingWouldSaveBytes == 148_373_504)
        #expect(savings.reclaimedBytes == 3_354_624)
        // 148,373,504 / 536,870,912 = 27.64%
        #expect(savings.summary == "sharing would save 141.5 MiB of 512 MiB (27.6%), zero pages 84.1 MiB, reclaimed 3.2 MiB")
    }

    @Test func theKernelsMergesAreTheirOwnOutcome() {
        let kernel = GuestKernelKSM(mergeable: true, mergingPages: 1000, zeroPages: 280)  // 1280 × 4096 = 5 MiB
        let guest = GuestStatus(name: "g", uuid: "u", state: "running", mapped: false, mode: .merge, kernelKSM: kernel)
        #expect(Savings(guest).summary == "sharing would save 0 B, zero pages 0 B, reclaimed 0 B, merged by the kernel 5 MiB")
    }

    @Test func anUnmappedGuestHasNoShare() {
        let guest = GuestStatus(name: "g", uuid: "u", state: "running", mapped: false, mode: .off)
        #expect(Savings(guest).summary == "sharing would save 0 B, zero pages 0 B, reclaimed 0 B")
    }

    @Test func totalsAdd() {
        let a = Savings(guestRAMBytes: 1 << 30, sharingWouldSaveBytes: 1 << 20, zeroPageBytes: 2 << 20, reclaimedBytes: 0)
        let b = Savings(guestRAMBytes: 1 << 30, sharingWouldSaveBytes: 3 << 20, zeroPageBytes: 0, reclaimedBytes: 1 << 20)
        let total = [a, b].reduce(.zero, +)
        // 4 MiB of 2 GiB = 0.195%
        #expect(total.summary == "sharing would save 4 MiB of 2 GiB (0.2%), zero pages 2 MiB, reclaimed 1 MiB")
    }
}

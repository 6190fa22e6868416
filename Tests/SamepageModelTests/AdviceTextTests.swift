import SamepageCore
import SamepageModel
import Testing

/// The advice in words, from fixed values, against text written by hand.
@Suite("Advice text") struct AdviceTextTests {
    @Test func aSharedMemoryHugepageGuestWithABalloonWithoutReporting() {
        let advice = GuestAdvice(
            name: "sp-1", uuid: "u-1", mode: .merge, privateRAM: false,
            modes: [
                .init(mode: .off, wouldFreeBytes: 0, eligible: false, why: "never read"),
                .init(mode: .report, wouldFreeBytes: 0, eligible: false, why: "the dry run"),
                .init(mode: .zero, wouldFreeBytes: 20 << 20, eligible: true, why: "zero pages given back"),
                .init(mode: .merge, wouldFreeBytes: 20 << 20, eligible: true, why: "zero pages given back; duplicates accounted only"),
            ],
            zeroBytesLeft: 20 << 20, privateRAMWouldSave: .init(duplicateBytes: 132 << 20, zeroBytes: 20 << 20),
            hugePages: HugePageZeroes(pagesPerHugePage: 512, hugePages: 96, allZero: 10, partlyZero: 5, strandedZeroPages: 768),
            balloon: Balloon(model: "virtio", freePageReporting: false))
        #expect(AdviceText.render([advice]) == """
            sp-1: mode merge, shared memory
              off     frees nothing: never read
              report  frees nothing: the dry run
              zero    would free 20 MiB now: zero pages given back
            * merge   would free 20 MiB now: zero pages given back; duplicates accounted only
              private RAM: the kernel's KSM could merge about 152 MiB (duplicates 132 MiB, zero pages 20 MiB); it gives up vhost-user and virtiofs (they need shared memory) and hugepages (the kernel's KSM merges no huge page)
              huge pages: 96 of 2 MiB; 10 all zero (20 MiB, freed whole by a punch), 5 partly zero holding 3 MiB of zero 4 KiB pages nothing can free (stranded)
              balloon: virtio, free page reporting off: with it on (libvirt <memballoon freePageReporting='on'>) the guest would give back the pages it frees
            """)
    }

    @Test func twoGuestsOneIneligibleOnePrivateWithReporting() {
        let a = GuestAdvice(
            name: "db", uuid: "u-2", mode: .zero, privateRAM: false,
            modes: [.init(mode: .zero, wouldFreeBytes: 0, eligible: false, why: "not eligible: locked memory")],
            zeroBytesLeft: 4096, privateRAMWouldSave: nil, hugePages: nil, balloon: nil)
        let b = GuestAdvice(
            name: "web", uuid: "u-3", mode: .report, privateRAM: true,
            modes: [.init(mode: .merge, wouldFreeBytes: 1536 << 10, eligible: true, why: "the kernel's KSM merges it")],
            zeroBytesLeft: 0, privateRAMWouldSave: nil, hugePages: nil, balloon: Balloon(model: "virtio", freePageReporting: true))
        #expect(AdviceText.render([a, b]) == """
            db: mode zero, shared memory
            * zero    would free nothing: not eligible: locked memory
              balloon: none (a virtio balloon with free page reporting lets the guest give back the pages it frees)

            web: mode report, private RAM
              merge   would free 1.5 MiB now: the kernel's KSM merges it
              balloon: virtio, free page reporting on: the guest gives back the pages it frees
            """)
    }

    /// Mode zero compares nothing: private RAM's figure is a floor, its duplicates unknown.
    @Test func inModeZeroTheDuplicatesAreNotKnown() {
        let advice = GuestAdvice(
            name: "z", uuid: "u-4", mode: .zero, privateRAM: false, modes: [],
            zeroBytesLeft: 3 << 20, privateRAMWouldSave: .init(duplicateBytes: 0, zeroBytes: 3 << 20), hugePages: nil,
            balloon: Balloon(model: "virtio", freePageReporting: true))
        #expect(AdviceText.lines(advice) == [
            "  private RAM: the kernel's KSM could merge at least 3 MiB (duplicates not compared in mode zero, zero pages 3 MiB); it gives up vhost-user and virtiofs (they need shared memory)",
            "  balloon: virtio, free page reporting on: the guest gives back the pages it frees",
        ])
    }
}

import SamepageCore
import SamepageModel
import Testing

/// The advice's logic, one fact at a time, from statuses built by hand.
@Suite("Advice") struct GuestAdviceTests {
    /// A shared-memory guest of 512 MiB in `mode` with `zeroPages` confirmed zero pages and
    /// 8 MiB of attributed sharing.
    static func guest(mode: PolicyMode, zeroPages: Int = 2_560, reasonIfReclaiming: String? = nil) -> GuestStatus {
        var counters = Counters()
        counters.zeroPages = zeroPages
        var g = GuestStatus(name: "sp-1", uuid: "u-1", state: "running", mapped: true, mode: mode, counters: counters)
        g.attributedSharingBytes = 8 << 20
        g.reasonIfReclaiming = reasonIfReclaiming
        return g
    }

    @Test("A report guest: report frees nothing (the dry run), zero would free its zero pages")
    func reportIsTheDryRun() throws {
        var g = Self.guest(mode: .report)  // 2,560 zero pages = 10 MiB
        g.reclaim.reason = "policy mode report never changes the guest"
        let a = GuestAdvice(g)
        #expect(a.modes.map(\.mode) == [.off, .report, .zero, .merge])
        #expect(a.advice(for: .off) == .init(mode: .off, wouldFreeBytes: 0, eligible: false, why: "never read: nothing is found"))
        let report = try #require(a.advice(for: .report))
        #expect(report.wouldFreeBytes == 0)
        #expect(report.why.hasPrefix("the dry run"))
        #expect(a.advice(for: .zero) == .init(mode: .zero, wouldFreeBytes: 10 << 20, eligible: true, why: "zero pages given back in short pauses of the guest"))
        #expect(a.zeroBytesLeft == 10 << 20)
    }

    @Test("A guest reclaiming now: what is left is its pending pages, not the engine's zero pages")
    func reclaimingGuestCountsPending() throws {
        var g = Self.guest(mode: .zero)
        g.reclaim.eligible = true
        g.reclaim.pendingPages = 256  // 1 MiB
        let a = GuestAdvice(g)
        #expect(a.zeroBytesLeft == 1 << 20)
        #expect(a.advice(for: .zero)?.wouldFreeBytes == 1 << 20)
        // Mode zero compares nothing: its duplicates are not known.
        #expect(try #require(a.advice(for: .merge)).why.hasSuffix("duplicates are not compared in mode zero (report or merge finds them)"))
    }

    @Test("A shared-memory guest: merge frees its zero pages only; private RAM would let the kernel merge the duplicates too")
    func sharedMemoryGuest() throws {
        let a = GuestAdvice(Self.guest(mode: .merge, zeroPages: 512))  // 2 MiB
        let merge = try #require(a.advice(for: .merge))
        #expect(merge.wouldFreeBytes == 2 << 20)
        #expect(merge.why.hasSuffix("duplicates (8 MiB) accounted only: Linux cannot merge shared memory"))
        #expect(a.privateRAMWouldSave == .init(duplicateBytes: 8 << 20, zeroBytes: 2 << 20))
        #expect(a.privateRAMWouldSave?.totalBytes == 10 << 20)
        #expect(!a.privateRAM)
    }

    @Test("An ineligible guest: zero and merge free nothing, and say why")
    func ineligibleGuest() throws {
        let reason = "assigned devices keep writing while paused: hostdev0"
        let a = GuestAdvice(Self.guest(mode: .merge, reasonIfReclaiming: reason))
        #expect(a.advice(for: .zero) == .init(mode: .zero, wouldFreeBytes: 0, eligible: false, why: "not eligible: \(reason)"))
        let merge = try #require(a.advice(for: .merge))
        #expect(!merge.eligible && merge.wouldFreeBytes == 0)
        #expect(merge.why.hasPrefix("not eligible: \(reason);"))
    }

    @Test("A hugepage guest: only whole zero huge pages are left to free; partly zero ones are stranded")
    func hugepageGuest() {
        var g = Self.guest(mode: .report, zeroPages: 5_888)
        g.hugePageZeroes = HugePageZeroes(pagesPerHugePage: 512, hugePages: 96, allZero: 10, partlyZero: 5, strandedZeroPages: 768)
        let a = GuestAdvice(g)
        #expect(a.zeroBytesLeft == 20 << 20)  // 10 × 2 MiB, not 5,888 × 4 KiB
        #expect(a.advice(for: .zero)?.wouldFreeBytes == 20 << 20)
        #expect(a.hugePages?.strandedZeroPages == 768)
    }

    @Test("A private-RAM guest: zero is not eligible (the kernel's), merge lets the kernel merge duplicates and zero pages")
    func privateRAMGuest() throws {
        var g = Self.guest(mode: .report, zeroPages: 512, reasonIfReclaiming: "private RAM: its zero pages are the kernel's KSM's to merge (use_zero_pages), not reclaimed")
        g.privateRAM = true
        g.attributedSharingBytes = 4 << 20
        g.kernelKSM = GuestKernelKSM(mergeable: true, mergingPages: 256, zeroPages: 0)
        let a = GuestAdvice(g)
        #expect(a.advice(for: .zero)?.wouldFreeBytes == 0)
        #expect(a.advice(for: .zero)?.eligible == false)
        let merge = try #require(a.advice(for: .merge))
        #expect(merge.wouldFreeBytes == 6 << 20)  // 4 MiB of duplicates + 512 × 4 KiB
        #expect(merge.eligible)
        #expect(merge.why == "the kernel's KSM merges it (duplicates and zero pages, Samepage's estimate); merged by the kernel now: 1 MiB")
        #expect(a.privateRAMWouldSave == nil)
    }

    @Test("A private-RAM guest the kernel may not merge: merge frees nothing, with the refusal")
    func privateRAMRefused() throws {
        var g = Self.guest(mode: .merge)
        g.privateRAM = true
        g.kernelKSM = GuestKernelKSM(mergeable: false, refused: "trust group web is not kernel_ksm.trust_group db")
        let merge = try #require(GuestAdvice(g).advice(for: .merge))
        #expect(merge == .init(mode: .merge, wouldFreeBytes: 0, eligible: false, why: "the kernel may not merge it: trust group web is not kernel_ksm.trust_group db; merged by the kernel now: 0 B"))
    }

    @Test("A private-RAM guest while samepaged does not govern ksmd: an estimate, said to depend on ksmd")
    func privateRAMUngoverned() throws {
        var g = Self.guest(mode: .merge, zeroPages: 0)
        g.privateRAM = true
        let merge = try #require(GuestAdvice(g).advice(for: .merge))
        #expect(merge.wouldFreeBytes == 8 << 20)
        #expect(merge.why == "the kernel's KSM would merge it if ksmd runs (samepaged does not govern ksmd; estimate: duplicates and zero pages)")
    }

    @Test("The balloon is the guest's fact, passed through")
    func balloon() {
        var g = Self.guest(mode: .off)
        #expect(GuestAdvice(g).balloon == nil)
        g.facts.balloon = Balloon(model: "virtio", freePageReporting: true)
        #expect(GuestAdvice(g).balloon == Balloon(model: "virtio", freePageReporting: true))
    }

    @Test("A guest in mode off: not scanned, so what each mode would free is unknown, eligible or not")
    func offGuestIsUnknown() throws {
        var g = Self.guest(mode: .off, zeroPages: 0)
        g.mapped = false
        g.reason = "policy mode is off"
        g.attributedSharingBytes = 0
        let a = GuestAdvice(g)
        let zero = try #require(a.advice(for: .zero))
        #expect(zero.eligible && zero.wouldFreeBytes == 0)
        #expect(zero.why == "zero pages given back in short pauses of the guest; not scanned now, so what it would free is unknown (report finds it)")
        #expect(try #require(a.advice(for: .merge)).why.hasSuffix("; duplicates are accounted only: Linux cannot merge shared memory"))
        #expect(a.privateRAMWouldSave == nil)
    }
}

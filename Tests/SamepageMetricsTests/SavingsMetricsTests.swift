import SamepageCore
import SamepageMetrics
import SamepageModel
import Testing

/// The savings' series, globally and per guest, against figures worked out by hand.
@Suite("Savings series")
struct SavingsMetricsTests {
    let a = "00000000-0000-0000-0000-00000000000a"
    let b = "00000000-0000-0000-0000-00000000000b"

    @Test("Freed, freeable, merged by the kernel and private-RAM-only sharing, summed and per guest; attributed sharing per guest")
    func savingsSeries() {
        // alpha: shared memory, 200 pages reclaimed (819,200 B), 199 held (815,104 B), 10
        // pending and eligible (40,960 B), 12,288 B of attributed sharing.
        var alpha = guest("alpha", uuid: a, group: "web", scanned: 1, shared: 0, reclaimed: 200)
        alpha.reclaim.pendingPages = 10
        alpha.attributedSharingBytes = 12_288
        // beta: private RAM, 100 reclaimed, 99 held (405,504 B), pending but not eligible,
        // 8,192 B attributed (the kernel's: not private-RAM-only), ksm_stat 3 + 1 pages.
        var beta = guest("beta", uuid: b, group: nil, scanned: 1, shared: 0, reclaimed: 100)
        beta.reclaim.pendingPages = 5
        beta.reclaim.eligible = false
        beta.privateRAM = true
        beta.attributedSharingBytes = 8_192
        beta.kernelKSM = GuestKernelKSM(mergingPages: 3, zeroPages: 1)
        var snapshot = AgentSnapshot()
        snapshot.guests = [alpha, beta]
        let m = Exposition(MetricsExporter(version: "1").render(snapshot))

        #expect(m["samepage_freed_bytes"] == 1_220_608)
        #expect(m["samepage_freeable_bytes"] == 40_960)
        #expect(m["samepage_kernel_merged_bytes"] == 16_384)
        #expect(m["samepage_private_ram_only_sharing_bytes"] == 12_288)
        #expect(m.types["samepage_freed_bytes"] == "gauge")

        let ua = #"uuid="\#(a)""#, ub = #"uuid="\#(b)""#
        #expect(m["samepage_guest_freed_bytes{\(ua)}"] == 815_104)
        #expect(m["samepage_guest_freeable_bytes{\(ua)}"] == 40_960)
        #expect(m["samepage_guest_private_ram_only_sharing_bytes{\(ua)}"] == 12_288)
        #expect(m["samepage_guest_kernel_merged_bytes{\(ua)}"] == nil)
        #expect(m["samepage_guest_sharing_attributed_bytes{\(ua)}"] == 12_288)
        #expect(m["samepage_guest_freed_bytes{\(ub)}"] == 405_504)
        #expect(m["samepage_guest_freeable_bytes{\(ub)}"] == 0)
        #expect(m["samepage_guest_kernel_merged_bytes{\(ub)}"] == 16_384)
        // A private-RAM guest's duplicates are the kernel's: no such series for it.
        #expect(m["samepage_guest_private_ram_only_sharing_bytes{\(ub)}"] == nil)
        #expect(m["samepage_guest_sharing_attributed_bytes{\(ub)}"] == 8_192)
    }

    @Test("Without per-guest series, the host's savings stay and no guest's is written")
    func perGuestOff() {
        var alpha = guest("alpha", uuid: a, group: "web", scanned: 1, shared: 0, reclaimed: 200)
        alpha.attributedSharingBytes = 4096
        var snapshot = AgentSnapshot()
        snapshot.guests = [alpha]
        let m = Exposition(MetricsExporter(version: "1", perGuest: false).render(snapshot))
        #expect(m["samepage_private_ram_only_sharing_bytes"] == 4096)
        #expect(m.samples.keys.allSatisfy { !$0.hasPrefix("samepage_guest_") })
    }
}

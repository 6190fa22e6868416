import Foundation
import SamepageCore

/// What Samepage gives back, could give back, and costs, for a guest or the host, in bytes:
/// the figures an operator asks about, in the order they are shown and never blurred.
///
/// 1. **Freed now** (``freedBytes``): memory the host has back at this moment from zero-page
///    reclaim, net of refaults: the bytes the backends gave back (``reclaimedBytes``, measured
///    from their allocated blocks: the gross figure) less the pages the guest touched again
///    (``refaultedBytes``), and never more than the pages still holes (`pages_held`), which
///    `run unmerge` allocates again.
/// 2. **Freeable now** (``freeableBytes``): confirmed zero pages waiting for a pause
///    (`pending`) of guests eligible for reclaim. A guest that is not eligible frees nothing,
///    whatever it has pending. On hugetlbfs only whole zero huge pages free anything: there the
///    pending pages count up to the base pages of the all-zero huge pages (see
///    `samepage advise` for the stranded rest).
/// 3. **Merged by the kernel** (``kernelMergedBytes``): private-RAM pages the kernel's KSM
///    merged, from each guest's QEMU's `/proc/PID/ksm_stat` (`ksm_merging_pages` +
///    `ksm_zero_pages`): the one source, per guest and summed for the host. The kernel's
///    global counters (`samepage ksm`: `pages_sharing` + `ksm_zero_pages`) differ: they count
///    every process of the host, not only guests, and count each KSM page's first mapping as
///    not merged, while `ksm_merging_pages` counts every page mapped to a KSM page. nil when
///    nothing is known (no `ksm_stat`).
/// 4. **Duplicates only private RAM could realise** (``privateRAMOnlyBytes``): what sharing
///    would save on shared-memory guests (their attributed sharing, see
///    `Engine.attributedSharing(of:)`). Linux cannot merge pages of shared-memory files, so
///    this is never freed while the guest's RAM is shared; with private RAM the kernel's KSM
///    could merge them. Private-RAM guests' duplicates are the kernel's to merge: for such a
///    guest the figure does not apply (nil) and it adds nothing to the host's.
/// 5. **samepaged's own cost** (``agent``, the host's only): its RSS and CPU.
///
/// Each guest's figures add up to the host's: the total is the sum over the guests present
/// (guests gone are left out: what they freed is not held any more).
public struct Savings: Sendable, Equatable {
    /// The RAM of the guests counted, in bytes (their mapped regions).
    public var guestRAMBytes: Int
    /// Freed now, net of refaults (figure 1).
    public var freedBytes: Int
    /// Gross: bytes the backends gave back to reclaim.
    public var reclaimedBytes: Int
    /// Reclaimed pages the guests touched again, in bytes.
    public var refaultedBytes: Int
    /// Freeable now (figure 2).
    public var freeableBytes: Int
    /// Merged by the kernel (figure 3); nil when unknown.
    public var kernelMergedBytes: Int?
    /// Duplicates only private RAM could realise (figure 4); nil for a private-RAM guest.
    public var privateRAMOnlyBytes: Int?
    /// samepaged's own cost (figure 5), for the host; nil for a guest or when unread.
    public var agent: AgentCost?

    /// Savings of the figures given, in bytes; none by default.
    public init(
        guestRAMBytes: Int = 0, freedBytes: Int = 0, reclaimedBytes: Int = 0, refaultedBytes: Int = 0, freeableBytes: Int = 0,
        kernelMergedBytes: Int? = nil, privateRAMOnlyBytes: Int? = 0, agent: AgentCost? = nil
    ) {
        self.guestRAMBytes = guestRAMBytes
        self.freedBytes = freedBytes
        self.reclaimedBytes = reclaimedBytes
        self.refaultedBytes = refaultedBytes
        self.freeableBytes = freeableBytes
        self.kernelMergedBytes = kernelMergedBytes
        self.privateRAMOnlyBytes = privateRAMOnlyBytes
        self.agent = agent
    }

    /// A guest's, from its status (see the figures' definitions above).
    public init(_ guest: GuestStatus) {
        let r = guest.reclaim
        let refaulted = r.zeroPagesRefaulted * pageSize
        self.init(
            guestRAMBytes: guest.regions.reduce(0) { $0 + $1.bytes },
            freedBytes: max(0, min(r.bytesReclaimed - refaulted, r.pagesHeld * pageSize)),
            reclaimedBytes: r.bytesReclaimed, refaultedBytes: refaulted,
            freeableBytes: r.eligible ? Self.freeablePages(r.pendingPages, guest.hugePageZeroes) * pageSize : 0,
            kernelMergedBytes: guest.kernelKSM.map(\.mergedBytes),
            privateRAMOnlyBytes: guest.privateRAM ? nil : guest.attributedSharingBytes)
    }

    /// Pending pages that a punch frees: all of them, but on hugetlbfs no more than the base
    /// pages of the huge pages that are all zero (a punch inside a huge page frees nothing).
    private static func freeablePages(_ pending: Int, _ huge: HugePageZeroes?) -> Int {
        guard let huge else { return pending }
        return min(pending, huge.allZero * huge.pagesPerHugePage)
    }

    /// The host's: the sum over `guests`, with samepaged's own cost.
    public static func host(_ guests: [GuestStatus], agent: AgentCost?) -> Savings {
        var total = guests.map(Savings.init).reduce(Savings(), +)
        total.agent = agent
        return total
    }

    /// In words, in the figures' order; the RAM they are of last, and samepaged's cost when
    /// known: "freed now 40.3 MiB (gross 45 MiB, refaulted 4.7 MiB), freeable now 12 MiB,
    /// merged by the kernel 768 KiB, duplicates only private RAM could realise 132.6 MiB, of
    /// 768 MiB guest RAM; samepaged 86 MiB RSS, 2.1% CPU".
    public var summary: String {
        var parts = ["freed now \(Self.format(bytes: freedBytes)) (gross \(Self.format(bytes: reclaimedBytes)), refaulted \(Self.format(bytes: refaultedBytes)))"]
        parts.append("freeable now \(Self.format(bytes: freeableBytes))")
        if let kernelMergedBytes { parts.append("merged by the kernel \(Self.format(bytes: kernelMergedBytes))") }
        if let privateRAMOnlyBytes { parts.append("duplicates only private RAM could realise \(Self.format(bytes: privateRAMOnlyBytes))") }
        parts.append("of \(Self.format(bytes: guestRAMBytes)) guest RAM")
        var text = parts.joined(separator: ", ")
        if let agent {
            text += "; samepaged \(Self.format(bytes: agent.residentBytes)) RSS"
            text += agent.cpuRatio.map { String(format: ", %.1f%% CPU", $0 * 100) } ?? ""
        }
        return text
    }

    /// Sums savings (for the host's total); the agent's cost is not summed (the left one's kept).
    public static func + (a: Savings, b: Savings) -> Savings {
        Savings(
            guestRAMBytes: a.guestRAMBytes + b.guestRAMBytes, freedBytes: a.freedBytes + b.freedBytes,
            reclaimedBytes: a.reclaimedBytes + b.reclaimedBytes, refaultedBytes: a.refaultedBytes + b.refaultedBytes,
            freeableBytes: a.freeableBytes + b.freeableBytes,
            kernelMergedBytes: a.kernelMergedBytes == nil && b.kernelMergedBytes == nil ? nil : (a.kernelMergedBytes ?? 0) + (b.kernelMergedBytes ?? 0),
            privateRAMOnlyBytes: (a.privateRAMOnlyBytes ?? 0) + (b.privateRAMOnlyBytes ?? 0), agent: a.agent)
    }

    /// Bytes in binary units with one decimal, a whole number without it: "0 B", "512 B",
    /// "4 KiB", "141.5 MiB", "1.5 GiB".
    public static func format(bytes: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var value = Double(bytes)
        var unit = 0
        while abs(value) >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        let text = String(format: "%.1f", value)
        return "\(text.hasSuffix(".0") ? String(text.dropLast(2)) : text) \(units[unit])"
    }
}

/// The savings' wire form (`"savings"` of `stats` and of each guest): every figure under its
/// name in bytes, `kernel_merged_bytes` and `agent` null when unknown,
/// `private_ram_only_sharing_bytes` null for a private-RAM guest.
extension Savings: Codable {
    public enum CodingKeys: String, CodingKey {
        case agent
        case guestRAMBytes = "guest_ram_bytes"
        case freedBytes = "freed_bytes"
        case reclaimedBytes = "reclaimed_bytes"
        case refaultedBytes = "refaulted_bytes"
        case freeableBytes = "freeable_bytes"
        case kernelMergedBytes = "kernel_merged_bytes"
        case privateRAMOnlyBytes = "private_ram_only_sharing_bytes"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(guestRAMBytes, forKey: .guestRAMBytes)
        try c.encode(freedBytes, forKey: .freedBytes)
        try c.encode(reclaimedBytes, forKey: .reclaimedBytes)
        try c.encode(refaultedBytes, forKey: .refaultedBytes)
        try c.encode(freeableBytes, forKey: .freeableBytes)
        try c.encode(kernelMergedBytes, forKey: .kernelMergedBytes)
        try c.encode(privateRAMOnlyBytes, forKey: .privateRAMOnlyBytes)
        try c.encode(agent, forKey: .agent)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            guestRAMBytes: try c.decode(Int.self, forKey: .guestRAMBytes), freedBytes: try c.decode(Int.self, forKey: .freedBytes),
            reclaimedBytes: try c.decode(Int.self, forKey: .reclaimedBytes), refaultedBytes: try c.decode(Int.self, forKey: .refaultedBytes),
            freeableBytes: try c.decode(Int.self, forKey: .freeableBytes),
            kernelMergedBytes: try c.decodeIfPresent(Int.self, forKey: .kernelMergedBytes),
            privateRAMOnlyBytes: try c.decodeIfPresent(Int.self, forKey: .privateRAMOnlyBytes),
            agent: try c.decodeIfPresent(AgentCost.self, forKey: .agent))
    }
}

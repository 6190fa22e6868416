import Foundation
import SamepageCore

/// What merging and reclaim do, or would do, for a guest or the host, in bytes: the outcomes
/// an operator asks about, each kept apart.
///
/// - **Sharing would save**: pages merged into a stable node beyond its first
///   (`pages_sharing`). On shared-memory guests Samepage accounts these merges and does not
///   make them (see DESIGN.md): this is what merging them would give back.
/// - **Zero pages**: pages found all zero on two visits (`zero_pages`), whether or not
///   reclaimed yet.
/// - **Reclaimed**: zero pages punched out and still holes (`pages_held`): memory the host
///   has back now.
/// - **Merged by the kernel**: private-RAM pages the kernel's KSM merged for real
///   (`ksm_merging_pages` and `ksm_zero_pages`), when known.
public struct Savings: Sendable, Equatable {
    /// The RAM of the guests counted, in bytes (their mapped regions).
    public var guestRAMBytes: Int
    public var sharingWouldSaveBytes: Int
    public var zeroPageBytes: Int
    public var reclaimedBytes: Int
    /// nil when the kernel's figures are not known.
    public var kernelMergedBytes: Int?

    public init(guestRAMBytes: Int, sharingWouldSaveBytes: Int, zeroPageBytes: Int, reclaimedBytes: Int, kernelMergedBytes: Int? = nil) {
        self.guestRAMBytes = guestRAMBytes
        self.sharingWouldSaveBytes = sharingWouldSaveBytes
        self.zeroPageBytes = zeroPageBytes
        self.reclaimedBytes = reclaimedBytes
        self.kernelMergedBytes = kernelMergedBytes
    }

    /// From the kernel-named counters and reclaim's figures, in pages of ``pageSize``.
    public init(counters: Counters, reclaim: ReclaimStatus, guestRAMBytes: Int, kernelMergedBytes: Int? = nil) {
        self.init(
            guestRAMBytes: guestRAMBytes, sharingWouldSaveBytes: counters.pagesSharing * pageSize,
            zeroPageBytes: counters.zeroPages * pageSize, reclaimedBytes: reclaim.pagesHeld * pageSize,
            kernelMergedBytes: kernelMergedBytes)
    }

    /// A guest's: its mapped regions are its RAM.
    public init(_ guest: GuestStatus) {
        self.init(
            counters: guest.counters, reclaim: guest.reclaim, guestRAMBytes: guest.regions.reduce(0) { $0 + $1.bytes },
            kernelMergedBytes: guest.kernelKSM.map(\.mergedBytes))
    }

    /// In words, leading with what sharing would save as a share of the RAM: "sharing would
    /// save 141.5 MiB of 512 MiB (27.6%), zero pages 84.1 MiB, reclaimed 3.2 MiB".
    public var summary: String {
        let share = guestRAMBytes > 0 ? String(format: " (%.1f%%)", Double(sharingWouldSaveBytes) * 100 / Double(guestRAMBytes)) : ""
        let of = guestRAMBytes > 0 ? " of \(Self.format(bytes: guestRAMBytes))" : ""
        return "sharing would save \(Self.format(bytes: sharingWouldSaveBytes))\(of)\(share), "
            + "zero pages \(Self.format(bytes: zeroPageBytes)), reclaimed \(Self.format(bytes: reclaimedBytes))"
            + (kernelMergedBytes.map { ", merged by the kernel \(Self.format(bytes: $0))" } ?? "")
    }

    /// Sums savings (for the host's total).
    public static func + (a: Savings, b: Savings) -> Savings {
        Savings(
            guestRAMBytes: a.guestRAMBytes + b.guestRAMBytes, sharingWouldSaveBytes: a.sharingWouldSaveBytes + b.sharingWouldSaveBytes,
            zeroPageBytes: a.zeroPageBytes + b.zeroPageBytes, reclaimedBytes: a.reclaimedBytes + b.reclaimedBytes,
            kernelMergedBytes: a.kernelMergedBytes == nil && b.kernelMergedBytes == nil ? nil : (a.kernelMergedBytes ?? 0) + (b.kernelMergedBytes ?? 0))
    }

    public static let zero = Savings(guestRAMBytes: 0, sharingWouldSaveBytes: 0, zeroPageBytes: 0, reclaimedBytes: 0)

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

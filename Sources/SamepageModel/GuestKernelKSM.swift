import SamepageCore

/// What the kernel's own KSM does with one guest: whether samepaged lets it merge the guest
/// (governing ksmd only), and what it merged, from `/proc/PID/ksm_stat` of the guest's QEMU.
public struct GuestKernelKSM: Sendable, Equatable, Codable {
    /// The `merge` property samepaged gave the guest's memory backends; nil when samepaged
    /// does not govern ksmd (QEMU's own default then holds: mergeable unless
    /// `<nosharepages/>`).
    public var mergeable: Bool?
    /// Why the kernel may not merge the guest, while samepaged governs ksmd.
    public var refused: String?
    /// `ksm_merging_pages`: QEMU's pages merged by the kernel (into KSM pages).
    public var mergingPages: Int?
    /// `ksm_zero_pages`: QEMU's pages merged with the kernel's zero page.
    public var zeroPages: Int?
    /// `ksm_process_profit`: bytes the kernel saved on QEMU, less its own tracking.
    public var processProfit: Int?

    public init(mergeable: Bool? = nil, refused: String? = nil, mergingPages: Int? = nil, zeroPages: Int? = nil, processProfit: Int? = nil) {
        self.mergeable = mergeable
        self.refused = refused
        self.mergingPages = mergingPages
        self.zeroPages = zeroPages
        self.processProfit = processProfit
    }

    /// Bytes the kernel merged: its merging pages and zero pages, in pages of ``pageSize``.
    public var mergedBytes: Int { ((mergingPages ?? 0) + (zeroPages ?? 0)) * pageSize }

    public enum CodingKeys: String, CodingKey {
        case mergeable, refused
        case mergingPages = "ksm_merging_pages"
        case zeroPages = "ksm_zero_pages"
        case processProfit = "ksm_process_profit"
    }
}

/// The kernel's own KSM (ksmd) as samepaged sees it: whether it governs ksmd, what ksmd is
/// doing and why, and the kernel's global counters (`/sys/kernel/mm/ksm`). Shown by
/// `samepage ksm` and in `stats` (`kernel_ksm`).
public struct KernelKSMStatus: Sendable, Equatable, Codable {
    /// Whether samepaged owns `/sys/kernel/mm/ksm` (`[kernel_ksm] enabled`).
    public var governed = false
    /// The group whose guests the kernel may merge (`[kernel_ksm] trust_group`).
    public var trustGroup: String?
    /// `run` as the kernel has it now: 0 stopped, 1 running, 2 unmerging; nil when unread.
    public var run: Int?
    /// Why ksmd runs or not, from the run policy's last decision (governed only).
    public var why: String?
    /// Settings samepaged could not apply or restore, each with its errno.
    public var failures: [String] = []
    /// Whether samepaged fails to hold ksmd back now (to stop it while a guest outside the
    /// trust group may still be merged): it does not govern ksmd as it promised (governed
    /// only; nil otherwise).
    public var holdBackFailing: Bool?
    /// How many times stopping ksmd for a hold-back has failed since samepaged started
    /// (governed only; nil otherwise).
    public var holdBackFailures: Int?
    /// The kernel's counters, under their file names; nil where the kernel has no such file.
    public var pagesShared: Int?
    public var pagesSharing: Int?
    public var pagesUnshared: Int?
    public var pagesVolatile: Int?
    public var fullScans: Int?
    public var ksmZeroPages: Int?
    public var generalProfit: Int?
    /// `pages_to_scan` and `sleep_millisecs` as the kernel has them now.
    public var pagesToScan: Int?
    public var sleepMillisecs: Int?
    /// `advisor_mode`: "none" or "scan-time"; nil on a kernel without the advisor.
    public var advisorMode: String?
    /// The `[kernel_ksm]` settings in force, as the configuration file and `samepage tune
    /// --kernel-…` made them (governed only).
    public var configuration: KernelKSMConfiguration?

    public init() {}

    public enum CodingKeys: String, CodingKey {
        case governed, run, why, failures, configuration
        case holdBackFailing = "hold_back_failing"
        case holdBackFailures = "hold_back_failures"
        case trustGroup = "trust_group"
        case pagesShared = "pages_shared"
        case pagesSharing = "pages_sharing"
        case pagesUnshared = "pages_unshared"
        case pagesVolatile = "pages_volatile"
        case fullScans = "full_scans"
        case ksmZeroPages = "ksm_zero_pages"
        case generalProfit = "general_profit"
        case pagesToScan = "pages_to_scan"
        case sleepMillisecs = "sleep_millisecs"
        case advisorMode = "advisor_mode"
    }
}

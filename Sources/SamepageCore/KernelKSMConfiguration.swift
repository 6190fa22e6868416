/// What the daemon's `[kernel_ksm]` section asks of the kernel's own KSM (ksmd), for guests
/// whose RAM is private and so can be merged by the kernel for real.
///
/// Off by default: installing Samepage never changes a host's KSM. When enabled, samepaged
/// saves every knob of `/sys/kernel/mm/ksm` at start, sets those below, runs ksmd while
/// memory is short (``availableThresholdPercent``) and puts every knob back when it stops.
///
/// The knob keys are the kernel's names (``CodingKeys``), and their defaults are the kernel's
/// but for ``useZeroPages`` and the advisor, which Samepage turns on.
public struct KernelKSMConfiguration: Sendable, Equatable {
    /// Whether samepaged governs ksmd at all (`enabled`, default false).
    public var enabled: Bool
    /// The one trust group whose guests the kernel may merge (`trust_group`); nil (`""`) for
    /// none. KSM has no trust groups of its own: every mergeable page is compared with every
    /// other, so only one group may be handed to it. QEMU marks a guest's RAM mergeable
    /// unless told not to (its `mem-merge` property; libvirt's `<nosharepages/>`), and a
    /// running ksmd merges such guests whatever their group.
    public var trustGroup: String?
    /// ksmd runs while MemAvailable is below this share of MemTotal, in percent, or while
    /// there is memory pressure (`available_threshold_percent`, 1 to 100; 100 always runs).
    public var availableThresholdPercent: Int
    /// The scan-rate advisor, where the kernel has one (`advisor_mode`, default scan-time).
    public var advisorMode: AdvisorMode
    /// The advisor's target time for one full scan, in seconds (`advisor_target_scan_time`,
    /// at least 1; kernel default 200).
    public var advisorTargetScanTime: Int
    /// The advisor's cap on ksmd's CPU use, in percent (`advisor_max_cpu`, 1 to 100; kernel
    /// default 70).
    public var advisorMaxCPU: Int
    /// Pages ksmd scans a batch without the advisor (`pages_to_scan`; kernel default 100).
    /// Used when ``advisorMode`` is `none` or the kernel has no advisor.
    public var pagesToScan: Int
    /// ksmd's sleep between batches, in milliseconds (`sleep_millisecs`; kernel default 20).
    public var sleepMillisecs: Int
    /// Cap on the pages sharing one KSM page (`max_page_sharing`, at least 2; kernel default
    /// 256). The kernel changes it only while no page is shared.
    public var maxPageSharing: Int
    /// Merge zero pages with the kernel's zero page (`use_zero_pages`, default true; the
    /// kernel's default is false). Zero pages dominate what guests share.
    public var useZeroPages: Bool
    /// Skip pages that keep failing to merge (`smart_scan`, Linux 6.7; default true).
    public var smartScan: Bool

    /// The keys of `[kernel_ksm]`: the kernel's file names for its knobs.
    public enum CodingKeys: String, CodingKey, CaseIterable, Sendable {
        case enabled
        case trustGroup = "trust_group"
        case availableThresholdPercent = "available_threshold_percent"
        case advisorMode = "advisor_mode"
        case advisorTargetScanTime = "advisor_target_scan_time"
        case advisorMaxCPU = "advisor_max_cpu"
        case pagesToScan = "pages_to_scan"
        case sleepMillisecs = "sleep_millisecs"
        case maxPageSharing = "max_page_sharing"
        case useZeroPages = "use_zero_pages"
        case smartScan = "smart_scan"
    }

    /// One of the integer settings.
    public typealias Knob = IntegerKnob<KernelKSMConfiguration, CodingKeys>

    /// The integer settings and their valid values, as the kernel takes them (an `unsigned
    /// int` for the scan rate, an `int` for `max_page_sharing`) or as their meaning bounds
    /// them: the one table the configuration file's reader and `ksm.tune` check them against.
    public static let integerKnobs: [Knob] = [
        Knob(.availableThresholdPercent, \.availableThresholdPercent, 1...100, expected: "1 to 100 (percent; 100 always runs)"),
        Knob(.advisorTargetScanTime, \.advisorTargetScanTime, 1...Int.max, expected: "1 or more (seconds)"),
        Knob(.advisorMaxCPU, \.advisorMaxCPU, 1...100, expected: "1 to 100 (percent)"),
        Knob(.pagesToScan, \.pagesToScan, 1...Int(UInt32.max)),
        Knob(.sleepMillisecs, \.sleepMillisecs, 0...Int(UInt32.max)),
        Knob(.maxPageSharing, \.maxPageSharing, 2...Int(Int32.max), expected: "at least 2 (the kernel has no unlimited)"),
    ]

    /// The configuration; each setting left out takes its default (an empty section's).
    public init(
        enabled: Bool = false, trustGroup: String? = nil, availableThresholdPercent: Int = 20,
        advisorMode: AdvisorMode = .scanTime, advisorTargetScanTime: Int = 200,
        advisorMaxCPU: Int = 70, pagesToScan: Int = 100, sleepMillisecs: Int = 20,
        maxPageSharing: Int = 256, useZeroPages: Bool = true, smartScan: Bool = true
    ) {
        self.enabled = enabled
        self.trustGroup = trustGroup
        self.availableThresholdPercent = availableThresholdPercent
        self.advisorMode = advisorMode
        self.advisorTargetScanTime = advisorTargetScanTime
        self.advisorMaxCPU = advisorMaxCPU
        self.pagesToScan = pagesToScan
        self.sleepMillisecs = sleepMillisecs
        self.maxPageSharing = maxPageSharing
        self.useZeroPages = useZeroPages
        self.smartScan = smartScan
    }
}

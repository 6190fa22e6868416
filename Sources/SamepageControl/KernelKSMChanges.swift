import SamepageCore
import SamepageModel

/// Changes to ksmd's settings asked by a `ksm.tune` request (`samepage tune --kernel-…`):
/// each one nil or the new value, under `[kernel_ksm]`'s own keys.
///
/// Only what tunes ksmd can change live. `enabled` and `trust_group` decide whether samepaged
/// owns `/sys/kernel/mm/ksm` and which tenants the kernel may merge together: they change in
/// the configuration file only, with a reload (SIGHUP), so that what the file says is what a
/// restarted daemon does. A change made here lasts until the next reload or restart, as
/// `tune` does for the engine's knobs.
public struct KernelKSMChanges: Sendable, Equatable {
    /// ksmd runs while MemAvailable is below this share of MemTotal (1 to 100).
    public var availableThresholdPercent: Int?
    /// `advisor_mode`: who sets ksmd's `pages_to_scan`.
    public var advisorMode: AdvisorMode?
    /// `advisor_target_scan_time`, seconds (1 or more).
    public var advisorTargetScanTime: Int?
    /// `advisor_max_cpu`, percent (1 to 100).
    public var advisorMaxCPU: Int?
    /// `pages_to_scan`, used with `advisor_mode = "none"` (1 or more).
    public var pagesToScan: Int?
    /// `sleep_millisecs` (0 or more).
    public var sleepMillisecs: Int?
    /// `max_page_sharing` (at least 2; the kernel changes it only while no page is shared).
    public var maxPageSharing: Int?
    /// `use_zero_pages`.
    public var useZeroPages: Bool?
    /// `smart_scan`.
    public var smartScan: Bool?

    /// The changes; each setting left out (nil) stays as it is.
    public init(
        availableThresholdPercent: Int? = nil, advisorMode: AdvisorMode? = nil, advisorTargetScanTime: Int? = nil,
        advisorMaxCPU: Int? = nil, pagesToScan: Int? = nil, sleepMillisecs: Int? = nil, maxPageSharing: Int? = nil,
        useZeroPages: Bool? = nil, smartScan: Bool? = nil
    ) {
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

    typealias Key = KernelKSMConfiguration.CodingKeys
    typealias Range = KernelKSMConfiguration.Range

    /// The keys a `ksm.tune` request may carry, in the order the configuration lists them.
    public static let keys: [KernelKSMConfiguration.CodingKeys] = [
        .availableThresholdPercent, .advisorMode, .advisorTargetScanTime, .advisorMaxCPU, .pagesToScan,
        .sleepMillisecs, .maxPageSharing, .useZeroPages, .smartScan,
    ]

    /// The integer changes, each with its key, its range, the words for that range, and where
    /// it goes in the configuration.
    var integers: [(key: Key, value: Int?, range: ClosedRange<Int>, expected: String, keyPath: WritableKeyPath<KernelKSMConfiguration, Int>)] {
        [
            (.availableThresholdPercent, availableThresholdPercent, Range.availableThresholdPercent,
             Range.availableThresholdPercentWords, \.availableThresholdPercent),
            (.advisorTargetScanTime, advisorTargetScanTime, Range.advisorTargetScanTime, Range.advisorTargetScanTimeWords, \.advisorTargetScanTime),
            (.advisorMaxCPU, advisorMaxCPU, Range.advisorMaxCPU, Range.advisorMaxCPUWords, \.advisorMaxCPU),
            (.pagesToScan, pagesToScan, Range.pagesToScan, "1 to \(Range.pagesToScan.upperBound)", \.pagesToScan),
            (.sleepMillisecs, sleepMillisecs, Range.sleepMillisecs, "0 to \(Range.sleepMillisecs.upperBound)", \.sleepMillisecs),
            (.maxPageSharing, maxPageSharing, Range.maxPageSharing, Range.maxPageSharingWords, \.maxPageSharing),
        ]
    }

    /// Whether no setting is changed.
    public var isEmpty: Bool {
        integers.allSatisfy { $0.value == nil } && advisorMode == nil && useZeroPages == nil && smartScan == nil
    }

    /// Checks each given value against its range, as the configuration file's reader does.
    /// Throws an `invalid_argument` failure naming the key.
    public func validate() throws(ControlFailure) {
        for knob in integers {
            guard let value = knob.value, !knob.range.contains(value) else { continue }
            throw ControlFailure(.invalidArgument, "kernel_ksm.\(knob.key.rawValue) is \(value): expected \(knob.expected)")
        }
    }

    /// Why a request may not set ksmd's `pages_to_scan` while its advisor is on.
    static let pagesToScanFollowsAdvisor =
        "kernel_ksm.pages_to_scan follows the kernel's scan-time advisor while kernel_ksm.advisor_mode = \"scan-time\": "
        + "send advisor_mode = \"none\" with it (samepage tune --kernel-advisor-mode none --kernel-pages-to-scan N)"

    /// `configuration` (the settings in force) with these changes made. Throws an
    /// `invalid_argument` failure for a value out of its range, and for `pages_to_scan` while
    /// the advisor is or stays on (the kernel refuses it then).
    public func applied(to configuration: KernelKSMConfiguration) throws(ControlFailure) -> KernelKSMConfiguration {
        try validate()
        var result = configuration
        for knob in integers {
            if let value = knob.value { result[keyPath: knob.keyPath] = value }
        }
        if let advisorMode { result.advisorMode = advisorMode }
        if let useZeroPages { result.useZeroPages = useZeroPages }
        if let smartScan { result.smartScan = smartScan }
        if pagesToScan != nil, result.advisorMode == .scanTime {
            throw ControlFailure(.invalidArgument, Self.pagesToScanFollowsAdvisor)
        }
        return result
    }
}

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
public struct KernelKSMChanges: Sendable, Equatable, AdvisedChanges {
    /// The integer settings changed, each to its new value: ranged by
    /// ``KernelKSMConfiguration/integerKnobs``, checked as a request is read (``validate()``).
    public var integers: [KernelKSMConfiguration.CodingKeys: Int]
    /// `advisor_mode`: who sets ksmd's `pages_to_scan`.
    public var advisorMode: AdvisorMode?
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
        let given: [KernelKSMConfiguration.CodingKeys: Int?] = [
            .availableThresholdPercent: availableThresholdPercent, .advisorTargetScanTime: advisorTargetScanTime,
            .advisorMaxCPU: advisorMaxCPU, .pagesToScan: pagesToScan, .sleepMillisecs: sleepMillisecs,
            .maxPageSharing: maxPageSharing,
        ]
        self.init(integers: given.compactMapValues { $0 }, advisorMode: advisorMode, useZeroPages: useZeroPages, smartScan: smartScan)
    }

    /// The changes to the integer settings in `integers` and to the others.
    public init(
        integers: [KernelKSMConfiguration.CodingKeys: Int], advisorMode: AdvisorMode? = nil, useZeroPages: Bool? = nil,
        smartScan: Bool? = nil
    ) {
        self.integers = integers
        self.advisorMode = advisorMode
        self.useZeroPages = useZeroPages
        self.smartScan = smartScan
    }

    /// The new `pages_to_scan`, if any.
    public var pagesToScan: Int? { integers[.pagesToScan] }

    /// The keys a `ksm.tune` request may carry, in the order the configuration lists them.
    public static let keys: [KernelKSMConfiguration.CodingKeys] = KernelKSMConfiguration.CodingKeys.allCases.filter {
        $0 != .enabled && $0 != .trustGroup
    }

    /// Whether no setting is changed.
    public var isEmpty: Bool {
        integers.isEmpty && advisorMode == nil && useZeroPages == nil && smartScan == nil
    }

    /// Checks each given value against its range, as the configuration file's reader does.
    /// Throws an `invalid_argument` failure naming the key.
    public func validate() throws(ControlFailure) {
        for knob in KernelKSMConfiguration.integerKnobs {
            guard let value = integers[knob.key], let expected = knob.problem(with: value) else { continue }
            throw ControlFailure(.invalidArgument, "kernel_ksm.\(knob.key.rawValue) is \(value): expected \(expected)")
        }
    }

    /// Why a request may not set ksmd's `pages_to_scan` while its advisor is on.
    static let pagesToScanFollowsAdvisor =
        "kernel_ksm.pages_to_scan follows the kernel's scan-time advisor while kernel_ksm.advisor_mode = \"scan-time\": "
        + "send advisor_mode = \"none\" with it (samepage tune --kernel-advisor-mode none --kernel-pages-to-scan N)"

    /// `configuration` (the settings in force) with these changes made. Throws an
    /// `invalid_argument` failure for `pages_to_scan` while the advisor is or stays on (the
    /// kernel refuses it then). The values' own ranges were checked as the request was read.
    public func applied(to configuration: KernelKSMConfiguration) throws(ControlFailure) -> KernelKSMConfiguration {
        var result = KernelKSMConfiguration.integerKnobs.applying(integers, to: configuration)
        if let advisorMode { result.advisorMode = advisorMode }
        if let useZeroPages { result.useZeroPages = useZeroPages }
        if let smartScan { result.smartScan = smartScan }
        try checkPagesToScan(under: result.advisorMode)
        return result
    }
}

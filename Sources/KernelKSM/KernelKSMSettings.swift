import SamepageCore

/// Values for ksmd's writable knobs: a snapshot of the host's (``KernelKSM/settings()``,
/// taken when samepaged starts and applied again when it stops) or the settings Samepage
/// governs ksmd with (``init(governing:on:)``). Each knob that is nil is one the kernel does
/// not have (in a snapshot) or one left alone (in settings to apply).
///
/// # The order the kernel accepts
///
/// The knobs are not independent, and ``writes`` orders them so that each write is one the
/// kernel takes:
///
/// 1. `run` = 2 first, when that is the value: it unmerges every page, after which
///    `max_page_sharing` and `merge_across_nodes` may change. (Any other `run` goes last, so
///    that ksmd does not start with half of its settings.)
/// 2. The knobs that take any value at any time: `sleep_millisecs`,
///    `stable_node_chains_prune_millisecs`, `use_zero_pages`, `smart_scan`.
/// 3. `max_page_sharing` and `merge_across_nodes`, which the kernel changes only while no
///    page is shared (`EBUSY` otherwise, unless the value is unchanged). Nothing here
///    unmerges to make them succeed: unmerging may need as much memory as merging saved, so
///    a refusal is reported and the knob left as it is.
/// 4. The advisor's parameters, then `advisor_mode`: selecting a different mode resets
///    `pages_to_scan` (to 100 for `none`, to `advisor_min_pages_to_scan` for `scan-time`).
/// 5. `pages_to_scan`, after the mode it depends on, and only when that mode is not
///    `scan-time`: the kernel refuses it (`EINVAL`) while the advisor sets it. A snapshot
///    taken under the advisor therefore gets the advisor back, not its last rate.
/// 6. `run`.
///
/// Writing a knob's current value is always accepted (the kernel returns early for an
/// unchanged `max_page_sharing` or `merge_across_nodes`, and resets nothing for an unchanged
/// `advisor_mode`), so every knob that is set is written, whatever the kernel holds now.
public struct KernelKSMSettings: Sendable, Equatable, CustomStringConvertible {
    /// `run`.
    public var run: RunMode?
    /// `pages_to_scan`.
    public var pagesToScan: Int?
    /// `sleep_millisecs`.
    public var sleepMillisecs: Int?
    /// `max_page_sharing`.
    public var maxPageSharing: Int?
    /// `merge_across_nodes` (NUMA kernels).
    public var mergeAcrossNodes: Bool?
    /// `use_zero_pages`.
    public var useZeroPages: Bool?
    /// `smart_scan`.
    public var smartScan: Bool?
    /// `advisor_mode`.
    public var advisorMode: AdvisorMode?
    /// `advisor_target_scan_time`, in seconds.
    public var advisorTargetScanTime: Int?
    /// `advisor_max_cpu`, in percent.
    public var advisorMaxCPU: Int?
    /// `advisor_min_pages_to_scan`.
    public var advisorMinPagesToScan: Int?
    /// `advisor_max_pages_to_scan`.
    public var advisorMaxPagesToScan: Int?
    /// `stable_node_chains_prune_millisecs`.
    public var stableNodeChainsPruneMillisecs: Int?

    /// Settings; each knob not given is nil.
    public init(
        run: RunMode? = nil, pagesToScan: Int? = nil, sleepMillisecs: Int? = nil, maxPageSharing: Int? = nil,
        mergeAcrossNodes: Bool? = nil, useZeroPages: Bool? = nil, smartScan: Bool? = nil,
        advisorMode: AdvisorMode? = nil, advisorTargetScanTime: Int? = nil, advisorMaxCPU: Int? = nil,
        advisorMinPagesToScan: Int? = nil, advisorMaxPagesToScan: Int? = nil,
        stableNodeChainsPruneMillisecs: Int? = nil
    ) {
        self.run = run
        self.pagesToScan = pagesToScan
        self.sleepMillisecs = sleepMillisecs
        self.maxPageSharing = maxPageSharing
        self.mergeAcrossNodes = mergeAcrossNodes
        self.useZeroPages = useZeroPages
        self.smartScan = smartScan
        self.advisorMode = advisorMode
        self.advisorTargetScanTime = advisorTargetScanTime
        self.advisorMaxCPU = advisorMaxCPU
        self.advisorMinPagesToScan = advisorMinPagesToScan
        self.advisorMaxPagesToScan = advisorMaxPagesToScan
        self.stableNodeChainsPruneMillisecs = stableNodeChainsPruneMillisecs
    }

    /// The settings `configuration` asks ksmd for, on a kernel whose knobs are those of
    /// `kernel` (a snapshot of it): only knobs that kernel has, and `run` left to the run
    /// policy (``KernelKSMRunPolicy``).
    ///
    /// On a kernel with the advisor, `advisor_mode` is the configuration's, and
    /// `pages_to_scan` is set only when that mode is `none`; on a kernel without it,
    /// `pages_to_scan` is the configuration's. Knobs the configuration has no key for
    /// (`merge_across_nodes`, `advisor_min_pages_to_scan`, `advisor_max_pages_to_scan`,
    /// `stable_node_chains_prune_millisecs`) are left alone.
    public init(governing configuration: KernelKSMConfiguration, on kernel: KernelKSMSettings) {
        func ifPresent<Value>(_ present: Value?, _ wanted: Value) -> Value? {
            present == nil ? nil : wanted
        }
        self.init()
        sleepMillisecs = ifPresent(kernel.sleepMillisecs, configuration.sleepMillisecs)
        maxPageSharing = ifPresent(kernel.maxPageSharing, configuration.maxPageSharing)
        useZeroPages = ifPresent(kernel.useZeroPages, configuration.useZeroPages)
        smartScan = ifPresent(kernel.smartScan, configuration.smartScan)
        if kernel.advisorMode != nil {
            advisorMode = configuration.advisorMode
            advisorTargetScanTime = ifPresent(kernel.advisorTargetScanTime, configuration.advisorTargetScanTime)
            advisorMaxCPU = ifPresent(kernel.advisorMaxCPU, configuration.advisorMaxCPU)
            if configuration.advisorMode == .off {
                pagesToScan = ifPresent(kernel.pagesToScan, configuration.pagesToScan)
            }
        } else {
            pagesToScan = ifPresent(kernel.pagesToScan, configuration.pagesToScan)
        }
    }

    /// One write of a value to a knob's file.
    public struct Write: Sendable, Equatable, CustomStringConvertible {
        /// The file's name (`max_page_sharing`).
        public var name: String
        /// What is written to it (`256`), without the newline.
        public var text: String

        public init(name: String, text: String) {
            self.name = name
            self.text = text
        }

        /// `name=text`.
        public var description: String { "\(name)=\(text)" }
    }

    /// The writes that give ksmd these settings, in the order the kernel accepts (see the
    /// type's discussion): one for each knob that is set, but `pages_to_scan` under the
    /// advisor.
    public var writes: [Write] {
        let run = run.map { Write(name: KernelKSMKnob<RunMode>.run.name, text: $0.sysfsText) }
        var writes: [Write] = []
        if self.run == .unmerge, let run { writes.append(run) }
        for field in Self.fields where !(field.name == KernelKSMKnob<Int>.pagesToScan.name && advisorMode == .scanTime) {
            if let text = field.text(self) { writes.append(Write(name: field.name, text: text)) }
        }
        if self.run != .unmerge, let run { writes.append(run) }
        return writes
    }

    /// The knobs that are set, as `name=value` in the order they are written.
    public var description: String {
        writes.map(\.description).joined(separator: " ")
    }
}

import SamepageCore

/// A value one of ksmd's files holds: parsed from what the kernel shows, written as the
/// kernel reads it.
public protocol KernelKSMValue: Sendable, Equatable {
    /// The value the file's text shows, without its trailing newline; nil if it is not one.
    init?(sysfsText: Substring)
    /// The text written to the file (without a newline; the writer adds one, as `echo` does).
    var sysfsText: String { get }
}

/// A number: the kernel shows `%u`, `%lu` or `%d` and reads it with `kstrtoul` or `kstrtoint`.
extension Int: KernelKSMValue {
    public init?(sysfsText: Substring) { self.init(sysfsText, radix: 10) }
    public var sysfsText: String { String(self) }
}

/// A switch: the kernel shows `0` or `1` and reads it with `kstrtobool` (or `kstrtoul`, for
/// `merge_across_nodes`), both of which take `0` and `1`.
extension Bool: KernelKSMValue {
    public init?(sysfsText: Substring) {
        switch sysfsText {
        case "0": self = false
        case "1": self = true
        default: return nil
        }
    }
    public var sysfsText: String { self ? "1" : "0" }
}

/// `run`: 0 stop, 1 merge, 2 unmerge.
extension RunMode: KernelKSMValue {
    public init?(sysfsText: Substring) {
        guard let number = Int(sysfsText, radix: 10) else { return nil }
        self.init(rawValue: number)
    }
    public var sysfsText: String { String(rawValue) }
}

/// `advisor_mode`: the file lists every mode and brackets the selected one (`[none]
/// scan-time`, `none [scan-time]`); a mode is written by its name alone.
extension AdvisorMode: KernelKSMValue {
    public init?(sysfsText: Substring) {
        var selected: AdvisorMode?
        for word in sysfsText.split(separator: " ") where word.hasPrefix("[") && word.hasSuffix("]") && word.count > 2 {
            // Exactly one bracketed word, naming a mode Samepage knows.
            guard selected == nil, let mode = AdvisorMode(rawValue: String(word.dropFirst().dropLast())) else {
                return nil
            }
            selected = mode
        }
        guard let selected else { return nil }
        self = selected
    }
    public var sysfsText: String { rawValue }
}

/// One writable file of `/sys/kernel/mm/ksm`, with the type of value it holds: `.run` holds
/// a ``RunMode``, `.pagesToScan` an `Int`. Read and written through ``KernelKSM``.
///
/// ```swift
/// let ksm = KernelKSM()
/// if let mode = try ksm.read(.advisorMode) { … }   // nil on a kernel before 6.8
/// try ksm.write(.run, .merge)
/// ```
public struct KernelKSMKnob<Value: KernelKSMValue>: Sendable, Hashable, CustomStringConvertible {
    /// The file's name in the KSM directory, the kernel's name for the knob.
    public let name: String

    init(_ name: String) {
        self.name = name
    }

    public var description: String { name }
}

extension KernelKSMKnob where Value == RunMode {
    /// `run`: 0 stops ksmd and keeps what it merged, 1 runs it, 2 stops it and unmerges every
    /// page (which may need as much memory as merging saved).
    public static var run: Self { Self("run") }
}

extension KernelKSMKnob where Value == Int {
    /// `pages_to_scan`: pages ksmd scans a batch. Refused (`EINVAL`) while an advisor is
    /// selected, which sets it itself.
    public static var pagesToScan: Self { Self("pages_to_scan") }
    /// `sleep_millisecs`: ksmd's sleep between batches.
    public static var sleepMillisecs: Self { Self("sleep_millisecs") }
    /// `max_page_sharing`: cap on the mappings of one KSM page, at least 2. Refused (`EBUSY`)
    /// while any page is shared, unless the value is unchanged.
    public static var maxPageSharing: Self { Self("max_page_sharing") }
    /// `stable_node_chains_prune_millisecs`: how often chains of KSM pages that hit
    /// `max_page_sharing` are pruned of stale entries.
    public static var stableNodeChainsPruneMillisecs: Self { Self("stable_node_chains_prune_millisecs") }
    /// `advisor_target_scan_time`: the advisor's target for one full scan, in seconds (at
    /// least 1).
    public static var advisorTargetScanTime: Self { Self("advisor_target_scan_time") }
    /// `advisor_max_cpu`: the advisor's cap on ksmd's CPU use, in percent.
    public static var advisorMaxCPU: Self { Self("advisor_max_cpu") }
    /// `advisor_min_pages_to_scan`: the `pages_to_scan` the advisor starts from when selected.
    public static var advisorMinPagesToScan: Self { Self("advisor_min_pages_to_scan") }
    /// `advisor_max_pages_to_scan`: the advisor's upper bound on `pages_to_scan`.
    public static var advisorMaxPagesToScan: Self { Self("advisor_max_pages_to_scan") }
}

extension KernelKSMKnob where Value == Bool {
    /// `merge_across_nodes` (NUMA kernels only): whether pages of different nodes may be
    /// merged. Refused (`EBUSY`) while any page is shared, unless unchanged.
    public static var mergeAcrossNodes: Self { Self("merge_across_nodes") }
    /// `use_zero_pages`: merge all-zero pages with the kernel's zero page.
    public static var useZeroPages: Self { Self("use_zero_pages") }
    /// `smart_scan` (6.7): skip pages that keep failing to merge.
    public static var smartScan: Self { Self("smart_scan") }
}

extension KernelKSMKnob where Value == AdvisorMode {
    /// `advisor_mode` (6.8): `none` or `scan-time`. Selecting a different mode resets
    /// `pages_to_scan` (to 100 for none, to `advisor_min_pages_to_scan` for scan-time).
    public static var advisorMode: Self { Self("advisor_mode") }
}

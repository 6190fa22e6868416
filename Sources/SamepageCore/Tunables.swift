/// What the scanner does, as `/sys/kernel/mm/ksm/run`.
public enum RunMode: Int, Sendable, Codable, CaseIterable {
    /// 0: stop scanning, keep what is merged.
    case stop = 0
    /// 1: scan and merge.
    case merge = 1
    /// 2: stop scanning and unmerge everything (drop all tracking; accounted merges vanish).
    case unmerge = 2
}

/// The scanner's knobs, with the kernel's names and defaults where the kernel has them.
/// All of them may change between batches.
public struct Tunables: Sendable, Equatable, Codable {
    /// Pages visited per batch (`pages_to_scan`, kernel default 100).
    public var pagesToScan: Int = 100
    /// Pause between batches (`sleep_millisecs`, kernel default 20). The engine itself never
    /// sleeps; its driver does.
    public var sleepMillisecs: Int = 20
    /// Cap on stable-tree nodes (merged contents tracked); 0 = unlimited. Bounds the agent's
    /// tracking memory; it frees nothing. Promotions refused at the cap are counted.
    public var maxKernelPages: Int = 0
    /// Cap on the pages sharing one stable node (`max_page_sharing`, kernel default 256);
    /// 0 = unlimited, otherwise at least 2. A full node gets a sibling with the same content.
    public var maxPageSharing: Int = 256
    /// Skip pages that keep failing to merge, for exponentially more passes (`smart_scan`).
    public var smartScan: Bool = true

    public init(
        pagesToScan: Int = 100, sleepMillisecs: Int = 20, maxKernelPages: Int = 0,
        maxPageSharing: Int = 256, smartScan: Bool = true
    ) {
        self.pagesToScan = pagesToScan
        self.sleepMillisecs = sleepMillisecs
        self.maxKernelPages = maxKernelPages
        self.maxPageSharing = maxPageSharing
        self.smartScan = smartScan
    }

    /// Throws ``TunableError`` naming the first knob out of range.
    public func validate() throws(TunableError) {
        guard pagesToScan >= 1 else { throw TunableError(name: "pages_to_scan", value: pagesToScan, expected: "at least 1") }
        guard sleepMillisecs >= 0 else { throw TunableError(name: "sleep_millisecs", value: sleepMillisecs, expected: "0 or more") }
        guard maxKernelPages >= 0 else { throw TunableError(name: "max_kernel_pages", value: maxKernelPages, expected: "0 (unlimited) or more") }
        guard maxPageSharing == 0 || maxPageSharing >= 2 else {
            throw TunableError(name: "max_page_sharing", value: maxPageSharing, expected: "0 (unlimited) or at least 2")
        }
    }
}

/// A tunable set to a value it cannot take.
public struct TunableError: Error, Sendable, Equatable, CustomStringConvertible {
    public var name: String
    public var value: Int
    public var expected: String
    public var description: String { "\(name) = \(value) is out of range: expected \(expected)" }
}

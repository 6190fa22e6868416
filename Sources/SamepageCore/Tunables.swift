/// The scanner's knobs, with the kernel's names and defaults where the kernel has them.
/// All of them may change between batches.
///
/// On the wire (its synthesized `Codable` form): one key each with the kernel's name, all
/// required; the daemon's stats carry them as their own top-level keys.
public struct Tunables: Sendable, Equatable, Codable {
    /// Pages visited per batch (`pages_to_scan`, kernel default 100).
    public var pagesToScan: Int
    /// Pause between batches (`sleep_millisecs`, kernel default 20). The engine itself never
    /// sleeps; its driver does.
    public var sleepMillisecs: Int
    /// Cap on stable-tree nodes (merged contents tracked); 0 = unlimited. Bounds the agent's
    /// tracking memory; it frees nothing. Promotions refused at the cap are counted.
    public var maxKernelPages: Int
    /// Cap on the pages sharing one stable node (`max_page_sharing`, kernel default 256);
    /// 0 = unlimited, otherwise at least 2. A full node gets a sibling with the same content.
    public var maxPageSharing: Int
    /// Skip pages that keep failing to merge, for exponentially more passes (`smart_scan`).
    public var smartScan: Bool

    /// The knobs' names, the kernel's (`/sys/kernel/mm/ksm/NAME`): the one table that
    /// configuration files, control requests and responses, and errors take them from.
    public enum CodingKeys: String, CodingKey, CaseIterable, Sendable {
        case pagesToScan = "pages_to_scan"
        case sleepMillisecs = "sleep_millisecs"
        case maxKernelPages = "max_kernel_pages"
        case maxPageSharing = "max_page_sharing"
        case smartScan = "smart_scan"
    }

    /// The knobs; each left out takes its default (the kernel's, where it has one).
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
        guard pagesToScan >= 1 else { throw TunableError(.pagesToScan, value: pagesToScan, expected: "at least 1") }
        // At most a minute: the agent's loop also ends pauses and answers requests between sleeps.
        guard sleepMillisecs >= 0 && sleepMillisecs <= 60_000 else {
            throw TunableError(.sleepMillisecs, value: sleepMillisecs, expected: "0 to 60000")
        }
        guard maxKernelPages >= 0 else {
            throw TunableError(.maxKernelPages, value: maxKernelPages, expected: "0 (unlimited) or more")
        }
        guard maxPageSharing == 0 || maxPageSharing >= 2 else {
            throw TunableError(.maxPageSharing, value: maxPageSharing, expected: "0 (unlimited) or at least 2")
        }
    }
}

/// A tunable set to a value it cannot take.
public struct TunableError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The tunable's kernel name (`pages_to_scan`).
    public var name: String
    public var value: Int
    public var expected: String
    public var description: String { "\(name) = \(value) is out of range: expected \(expected)" }
}

extension TunableError {
    /// `tunable` set to `value`, which is not `expected`.
    public init(_ tunable: Tunables.CodingKeys, value: Int, expected: String) {
        self.name = tunable.rawValue
        self.value = value
        self.expected = expected
    }
}

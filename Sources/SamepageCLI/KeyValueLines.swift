import SamepageCore
import SamepageModel

/// Keys and values, one pair a line, the values lined up in one column: how `stats`, `tune`
/// and `dominfo` show the kernel-named counters and knobs.
///
/// ```
/// pages_shared          10
/// zero_pages_reclaimed  4096
/// ```
public struct KeyValueLines: Sendable, Equatable {
    /// The pairs, in the order they are shown.
    public var pairs: [(key: String, value: String)]

    /// The pairs, in order.
    public init(_ pairs: [(String, String)]) {
        self.pairs = pairs.map { (key: $0.0, value: $0.1) }
    }

    /// Each key padded to the longest key plus two spaces (or to `minimumWidth`, if more),
    /// then its value; `indent` before each.
    public func lines(indent: String = "", minimumWidth: Int = 0) -> [String] {
        let width = max(minimumWidth, pairs.reduce(0) { max($0, $1.key.count) } + 2)
        return pairs.map { pair in
            let line = indent + pair.key + String(repeating: " ", count: width - pair.key.count) + pair.value
            return String(line.reversed().drop { $0 == " " }.reversed())
        }
    }

    /// Two blocks as one, aligned together.
    public static func + (a: KeyValueLines, b: KeyValueLines) -> KeyValueLines {
        var sum = a
        sum.pairs += b.pairs
        return sum
    }

    /// The same keys and values in the same order.
    public static func == (a: KeyValueLines, b: KeyValueLines) -> Bool {
        a.pairs.map(\.key) == b.pairs.map(\.key) && a.pairs.map(\.value) == b.pairs.map(\.value)
    }
}

/// Sizes in binary units, the one spelling of the CLI: "0 B", "4 KiB", "141.5 MiB", "1.5 GiB".
public func bytesText(_ bytes: Int) -> String { Savings.format(bytes: bytes) }

/// Pages of the engine's page size, in binary units.
public func pagesText(_ pages: Int) -> String { Savings.format(bytes: pages * pageSize) }

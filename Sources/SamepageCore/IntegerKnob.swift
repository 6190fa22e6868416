/// One integer knob of a set of knobs (`Root`): its key, where it lives, the values it takes
/// and the words that name them in an error. A set's table of these is the one place its
/// integer knobs are defined: readers of files and requests walk it, check each value with
/// ``problem(with:)`` as it becomes a value, and set it through ``keyPath``.
public struct IntegerKnob<Root, Key: Hashable & Sendable>: Sendable {
    /// The knob's key, whose string is its name in files, requests and errors.
    public let key: Key
    /// Where the knob lives in its set.
    public let keyPath: WritableKeyPath<Root, Int> & Sendable
    /// The values the knob takes, in words (`1 to 100`).
    public let expected: String
    /// The most the knob's type holds where the kernel has one (an `unsigned int`), above
    /// what `expected` names.
    public let maximum: Int
    private let fits: @Sendable (Int) -> Bool

    /// A knob taking the values `fits` accepts up to `maximum`, described as `expected`.
    public init(
        _ key: Key, _ keyPath: WritableKeyPath<Root, Int> & Sendable, expected: String, maximum: Int = .max,
        fits: @escaping @Sendable (Int) -> Bool
    ) {
        self.key = key
        self.keyPath = keyPath
        self.expected = expected
        self.maximum = maximum
        self.fits = fits
    }

    /// A knob taking the values of `range`, described as `expected` (by default `1 to 100`).
    public init(
        _ key: Key, _ keyPath: WritableKeyPath<Root, Int> & Sendable, _ range: ClosedRange<Int>,
        expected: String? = nil
    ) {
        self.init(key, keyPath, expected: expected ?? "\(range.lowerBound) to \(range.upperBound)") {
            range.contains($0)
        }
    }

    /// What is wrong with `value` for this knob (the words of the values it takes), or nil.
    public func problem(with value: Int) -> String? {
        if !fits(value) { return expected }
        return value > maximum ? "at most \(maximum)" : nil
    }
}

extension Array {
    /// The knob of this table with `key`.
    public func knob<Root, Key>(_ key: Key) -> Element? where Element == IntegerKnob<Root, Key> {
        first { $0.key == key }
    }

    /// `root` with the knobs of this table that `values` has set to them.
    public func applying<Root, Key>(_ values: [Key: Int], to root: Root) -> Root
    where Element == IntegerKnob<Root, Key> {
        var result = root
        for knob in self {
            if let value = values[knob.key] { result[keyPath: knob.keyPath] = value }
        }
        return result
    }
}

/// The lexical grammar of TOML 1.0's unquoted values: booleans, integers, floats, dates and
/// times (ranges such as month 1 to 12 are left to the parser).
///
/// toml++ 3.4.0 assumes some malformed values cannot occur (`1979-05-27Tx`, `1979-05-27 0]`):
/// a debug build aborts on them, a release build has undefined behaviour. So every unquoted
/// value is checked against the grammar before the parser sees the document.
enum ScalarSyntax {
    /// Whether `text` is a well-formed unquoted TOML value.
    static func isValid(_ text: some Collection<UInt8>) -> Bool {
        var scanner = ByteScanner(Array(text))
        return scanner.value() && scanner.atEnd
    }

    /// Whether `text` is a full date, `YYYY-MM-DD`: the start of a date-time whose time may
    /// follow a space.
    static func isFullDate(_ text: some Collection<UInt8>) -> Bool {
        var scanner = ByteScanner(Array(text))
        return scanner.fullDate() && scanner.atEnd
    }
}

private struct ByteScanner {
    let bytes: [UInt8]
    var index = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    var atEnd: Bool { index == bytes.count }
    var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    static func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }
    static func isHexDigit(_ byte: UInt8) -> Bool {
        isDigit(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
            || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte)
    }

    /// Runs `body`; if it fails, the cursor goes back to where it was.
    mutating func attempt(_ body: (inout ByteScanner) -> Bool) -> Bool {
        let saved = index
        if body(&self) { return true }
        index = saved
        return false
    }

    mutating func literal(_ text: StaticString) -> Bool {
        attempt { scanner in
            text.withUTF8Buffer { expected in
                for byte in expected {
                    guard scanner.current == byte else { return false }
                    scanner.index += 1
                }
                return true
            }
        }
    }

    mutating func one(_ accept: (UInt8) -> Bool) -> Bool {
        guard let byte = current, accept(byte) else { return false }
        index += 1
        return true
    }

    mutating func digits(_ count: Int) -> Bool {
        attempt { scanner in
            (0..<count).allSatisfy { _ in scanner.one(Self.isDigit) }
        }
    }

    /// `d *( d / "_" d )` for a digit class: underscores only between digits.
    mutating func digitRun(_ isDigit: (UInt8) -> Bool) -> Bool {
        guard one(isDigit) else { return false }
        while true {
            if one(isDigit) { continue }
            if current == UInt8(ascii: "_"),
                attempt({ scanner in
                    scanner.index += 1
                    return scanner.one(isDigit)
                })
            {
                continue
            }
            return true
        }
    }

    mutating func sign() {
        _ = one { $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-") }
    }

    // MARK: Values

    mutating func value() -> Bool {
        attempt { $0.literal("true") && $0.atEnd }
            || attempt { $0.literal("false") && $0.atEnd }
            || attempt { $0.dateTime() && $0.atEnd }
            || attempt { $0.partialTime() && $0.atEnd }
            || attempt { $0.prefixedInteger() && $0.atEnd }
            || attempt { $0.number() && $0.atEnd }
    }

    /// `0x`, `0o` or `0b` integers (never signed).
    mutating func prefixedInteger() -> Bool {
        attempt { $0.literal("0x") && $0.digitRun(Self.isHexDigit) }
            || attempt { $0.literal("0o") && $0.digitRun { (UInt8(ascii: "0")...UInt8(ascii: "7")).contains($0) } }
            || attempt { $0.literal("0b") && $0.digitRun { $0 == UInt8(ascii: "0") || $0 == UInt8(ascii: "1") } }
    }

    /// Decimal integers and floats, `inf` and `nan` included.
    mutating func number() -> Bool {
        sign()
        if literal("inf") || literal("nan") { return true }
        // An unsigned decimal integer: 0, or no leading zero.
        if current == UInt8(ascii: "0") {
            index += 1
        } else if !digitRun(Self.isDigit) {
            return false
        }
        if current == UInt8(ascii: ".") {
            index += 1
            guard digitRun(Self.isDigit) else { return false }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            index += 1
            sign()
            guard digitRun(Self.isDigit) else { return false }
        }
        return true
    }

    // MARK: Dates and times

    mutating func fullDate() -> Bool {
        digits(4) && literal("-") && digits(2) && literal("-") && digits(2)
    }

    mutating func partialTime() -> Bool {
        guard digits(2), literal(":"), digits(2), literal(":"), digits(2) else { return false }
        if current == UInt8(ascii: ".") {
            index += 1
            guard one(Self.isDigit) else { return false }
            while one(Self.isDigit) {}
        }
        return true
    }

    /// A date, or a date-time with or without an offset.
    mutating func dateTime() -> Bool {
        guard fullDate() else { return false }
        guard let delimiter = current else { return true }
        guard delimiter == UInt8(ascii: "T") || delimiter == UInt8(ascii: "t") || delimiter == UInt8(ascii: " ") else {
            return false
        }
        index += 1
        guard partialTime() else { return false }
        if current == UInt8(ascii: "Z") || current == UInt8(ascii: "z") {
            index += 1
        } else if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") {
            index += 1
            guard digits(2), literal(":"), digits(2) else { return false }
        }
        return true
    }
}

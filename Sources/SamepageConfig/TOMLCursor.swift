/// The characters of a TOML document under a cursor: where it is (line and column, for
/// messages), what is under it, and the lexical pieces that need no knowledge of tables and
/// keys (blanks, comments, the four kinds of strings and their escapes).
///
/// ``KeyLocator``'s scanner owns one and reads the document's structure through it; a piece
/// it cannot finish (an unterminated string) returns nil or false and leaves stopping to the
/// scanner.
struct TOMLCursor {
    typealias Position = KeyLocator.Position

    let bytes: [UInt8]
    var index = 0
    var line = 1
    /// The column of `index`, in scalars (a malformed byte counts as one).
    var column = 1
    /// The first `\u0000` or `\U00000000` escape in a basic string.
    var nulEscape: Position?

    init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    func peek(_ offset: Int) -> UInt8? {
        index + offset < bytes.count ? bytes[index + offset] : nil
    }

    var position: Position { Position(line: line, column: column) }

    mutating func advance() {
        guard index < bytes.count else { return }
        if bytes[index] == UInt8(ascii: "\n") {
            line += 1
            column = 1
        } else if bytes[index] & 0xC0 != 0x80 {
            column += 1
        }
        index += 1
    }

    mutating func advance(by count: Int) {
        for _ in 0..<count { advance() }
    }

    static func isBlank(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }

    /// Bytes that end an unquoted value, as toml++ sees it (a number, boolean, date or time).
    static func endsValue(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: ","), UInt8(ascii: "]"), UInt8(ascii: "}"), UInt8(ascii: "#"), UInt8(ascii: "\n"),
            UInt8(ascii: "\r"), UInt8(ascii: " "), UInt8(ascii: "\t"), 0x0B, 0x0C:
            return true
        default:
            return false
        }
    }

    static func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }

    /// The character at the cursor, for a message: printable as itself, otherwise escaped.
    func describeCurrentCharacter() -> String {
        guard index < bytes.count else { return "the end of the file" }
        if bytes[index] == UInt8(ascii: "\n") || bytes[index] == UInt8(ascii: "\r") { return "a line break" }
        var end = index + 1
        while end < bytes.count, end - index < 4, bytes[end] & 0xC0 == 0x80 { end += 1 }
        guard let scalar = String(decoding: bytes[index..<min(end, bytes.count)], as: UTF8.self).unicodeScalars.first
        else { return "?" }
        if scalar.value < 0x20 || scalar.value == 0x7F {
            return "U+" + String(scalar.value, radix: 16, uppercase: true).leftPadded(to: 4)
        }
        return "'\(scalar)'"
    }
    // MARK: Trivia

    mutating func skipBlanks() {
        while let byte = current, Self.isBlank(byte) { advance() }
    }

    mutating func skipComment() {
        guard current == UInt8(ascii: "#") else { return }
        while let byte = current, byte != UInt8(ascii: "\n") { advance() }
    }

    /// Blanks, comments and line breaks.
    mutating func skipTrivia() {
        while let byte = current {
            if Self.isBlank(byte) || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") {
                advance()
            } else if byte == UInt8(ascii: "#") {
                skipComment()
            } else {
                return
            }
        }
    }

    /// The rest of the line after a statement: blanks and a comment in a valid document.
    mutating func skipRestOfLine() {
        while let byte = current, byte != UInt8(ascii: "\n") { advance() }
    }
    // MARK: Strings

    /// After the opening quote of a basic string: its decoded content, through the closing
    /// quote; nil if the line or the text ends first.
    mutating func scanBasicString() -> String? {
        var content: [UInt8] = []
        while let byte = current {
            switch byte {
            case UInt8(ascii: "\""):
                advance()
                return String(decoding: content, as: UTF8.self)
            case UInt8(ascii: "\\"):
                if let scalar = scanEscape() {
                    content.append(contentsOf: Array(String(Character(scalar)).utf8))
                }
            case UInt8(ascii: "\n"):
                return nil
            default:
                content.append(byte)
                advance()
            }
        }
        return nil
    }

    /// After the opening quote of a literal string: its content, through the closing quote;
    /// nil if the line or the text ends first.
    mutating func scanLiteralString() -> String? {
        let start = index
        while let byte = current {
            if byte == UInt8(ascii: "'") {
                let content = String(decoding: bytes[start..<index], as: UTF8.self)
                advance()
                return content
            }
            if byte == UInt8(ascii: "\n") { break }
            advance()
        }
        return nil
    }

    /// After the opening delimiter of a multi-line string: through the closing one (a run of
    /// three to five quotes, the extra ones being content); false if the text ends first.
    mutating func skipMultilineString(quote: UInt8, escapes: Bool) -> Bool {
        while let byte = current {
            if byte == quote {
                var run = 0
                while current == quote {
                    advance()
                    run += 1
                }
                if run >= 3 { return true }
            } else if escapes && byte == UInt8(ascii: "\\") {
                _ = scanEscape()
            } else {
                advance()
            }
        }
        return false
    }

    /// At a backslash: consumes the escape and returns the scalar it stands for (nil for a
    /// line-ending backslash or anything unknown). Notes escapes of U+0000.
    mutating func scanEscape() -> Unicode.Scalar? {
        let start = position
        advance()
        guard let byte = current else { return nil }
        advance()
        switch byte {
        case UInt8(ascii: "b"): return "\u{08}"
        case UInt8(ascii: "t"): return "\t"
        case UInt8(ascii: "n"): return "\n"
        case UInt8(ascii: "f"): return "\u{0C}"
        case UInt8(ascii: "r"): return "\r"
        case UInt8(ascii: "e"): return "\u{1B}"
        case UInt8(ascii: "\""): return "\""
        case UInt8(ascii: "\\"): return "\\"
        case UInt8(ascii: "u"), UInt8(ascii: "U"):
            let digits = byte == UInt8(ascii: "u") ? 4 : 8
            var value: UInt32 = 0
            for _ in 0..<digits {
                guard let digit = current.flatMap({ Self.hexValue($0) }) else { return nil }
                value = value << 4 | digit
                advance()
            }
            if value == 0, nulEscape == nil {
                nulEscape = start
            }
            return Unicode.Scalar(value)
        default:
            return nil
        }
    }

    static func hexValue(_ byte: UInt8) -> UInt32? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt32(byte - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt32(byte - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

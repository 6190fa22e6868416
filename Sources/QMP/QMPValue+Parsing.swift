// # A strict parser, and why not JSONSerialization
//
// Every message QEMU sends goes through here, several per paused guest and second, on the
// thread that pauses guests: so one pass over the bytes, no `Any`, no bridging, and strings
// taken from the buffer whole when they hold no escape (most do). Strict, because a monitor
// that sends something other than RFC 8259 JSON is not a QEMU to trust with a guest's
// pause: no trailing commas, no leading zeros, no comments, no control characters in
// strings, no invalid UTF-8, no unpaired surrogate escapes, no member named twice.
//
// QEMU writes every character outside printable ASCII as a `\uXXXX` escape (characters
// beyond the Basic Multilingual Plane as a surrogate pair), so a guest named "café" arrives
// as "caf\u00E9": escapes are the common case of non-ASCII text, not a corner.
//
// Nesting is capped (``QMPValue/maximumNesting``): the parser recurses, and the thread it
// runs on may have a small stack. QMP's deepest replies (`query-pci` behind bridges) nest a
// few levels a bridge.

extension QMPValue {
    /// How deep arrays and objects may nest in parsed text (128).
    public static let maximumNesting = 128

    /// Why some text is not a JSON value.
    public struct ParseError: Error, Sendable, Hashable, CustomStringConvertible {
        /// The byte offset in the text where parsing stopped.
        public var offset: Int
        /// What was wrong there, such as `expected ':' after an object key`.
        public var reason: String

        /// `REASON at byte N`.
        public var description: String { "\(reason) at byte \(offset)" }
    }

    /// Parses `bytes`, UTF-8 JSON text holding exactly one value (white space around it is
    /// allowed, anything else after it is not).
    ///
    /// - Complexity: O(n) in the length of the text.
    public init<Bytes: Collection<UInt8>>(parsing bytes: Bytes) throws(ParseError) {
        let parsed = bytes.withContiguousStorageIfAvailable { Self.parseWhole($0) } ?? Array(bytes).withUnsafeBufferPointer { Self.parseWhole($0) }
        self = try parsed.get()
    }

    /// Parses JSON `text` (``init(parsing:)-(Bytes)``).
    public init(parsing text: String) throws(ParseError) {
        var text = text
        let parsed = text.withUTF8 { Self.parseWhole($0) }
        self = try parsed.get()
    }

    static func parseWhole(_ buffer: UnsafeBufferPointer<UInt8>) -> Result<QMPValue, ParseError> {
        var parser = JSONParser(buffer)
        return Result { () throws(ParseError) in try parser.parseDocument() }
    }
}

/// One pass over a buffer of UTF-8 JSON text; valid only while the buffer is.
private struct JSONParser {
    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0
    var depth = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    mutating func parseDocument() throws(QMPValue.ParseError) -> QMPValue {
        let value = try parseValue()
        skipWhitespace()
        guard index == bytes.count else { throw failure("unexpected \(describe(index)) after the value") }
        return value
    }

    // MARK: Values

    mutating func parseValue() throws(QMPValue.ParseError) -> QMPValue {
        skipWhitespace()
        guard index < bytes.count else { throw failure("unexpected end of text, expected a value") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try parseLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try parseLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try parseLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw failure("unexpected \(describe(index)), expected a value")
        }
    }

    mutating func parseObject() throws(QMPValue.ParseError) -> QMPValue {
        try enterContainer()
        var members: [String: QMPValue] = [:]
        skipWhitespace()
        if consume(UInt8(ascii: "}")) {
            depth -= 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
                throw failure("unexpected \(describe(index)), expected an object key")
            }
            let keyOffset = index
            let key = try parseString()
            skipWhitespace()
            guard consume(UInt8(ascii: ":")) else { throw failure("expected ':' after an object key") }
            let value = try parseValue()
            guard members.updateValue(value, forKey: key) == nil else {
                throw QMPValue.ParseError(offset: keyOffset, reason: "member \"\(key)\" given twice")
            }
            skipWhitespace()
            if consume(UInt8(ascii: ",")) { continue }
            guard consume(UInt8(ascii: "}")) else { throw failure("unexpected \(describe(index)), expected ',' or '}'") }
            depth -= 1
            return .object(members)
        }
    }

    mutating func parseArray() throws(QMPValue.ParseError) -> QMPValue {
        try enterContainer()
        var elements: [QMPValue] = []
        skipWhitespace()
        if consume(UInt8(ascii: "]")) {
            depth -= 1
            return .array(elements)
        }
        while true {
            elements.append(try parseValue())
            skipWhitespace()
            if consume(UInt8(ascii: ",")) { continue }
            guard consume(UInt8(ascii: "]")) else { throw failure("unexpected \(describe(index)), expected ',' or ']'") }
            depth -= 1
            return .array(elements)
        }
    }

    /// Steps over the opening bracket or brace, one level deeper.
    mutating func enterContainer() throws(QMPValue.ParseError) {
        guard depth < QMPValue.maximumNesting else {
            throw failure("nested deeper than \(QMPValue.maximumNesting) levels")
        }
        depth += 1
        index += 1
    }

    mutating func parseLiteral(_ word: StaticString) throws(QMPValue.ParseError) {
        let length = word.utf8CodeUnitCount
        guard bytes.count - index >= length,
            UnsafeBufferPointer(rebasing: bytes[index..<index + length]).elementsEqual(
                UnsafeBufferPointer(start: word.utf8Start, count: length))
        else { throw failure("unexpected \(describe(index)), expected a value") }
        index += length
    }

    // MARK: Numbers

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`: an integer unless it has a
    /// fraction or an exponent (or does not fit a `UInt64`, as QEMU's own parser does).
    mutating func parseNumber() throws(QMPValue.ParseError) -> QMPValue {
        let start = index
        let negative = consume(UInt8(ascii: "-"))
        guard index < bytes.count, isDigit(bytes[index]) else { throw failure("expected a digit") }
        var magnitude: UInt64 = 0
        var overflowed = false
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            if index < bytes.count, isDigit(bytes[index]) { throw failure("leading zero in a number") }
        } else {
            while index < bytes.count, isDigit(bytes[index]) {
                let (times10, overflow1) = magnitude.multipliedReportingOverflow(by: 10)
                let (sum, overflow2) = times10.addingReportingOverflow(UInt64(bytes[index] &- UInt8(ascii: "0")))
                overflowed = overflowed || overflow1 || overflow2
                magnitude = sum
                index += 1
            }
        }
        var integral = true
        if consume(UInt8(ascii: ".")) {
            integral = false
            try digits("a digit after '.'")
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            integral = false
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            try digits("a digit in the exponent")
        }
        if integral && !overflowed {
            if !negative {
                return magnitude <= UInt64(Int64.max) ? .int(Int64(magnitude)) : .uint(magnitude)
            }
            if magnitude <= UInt64(Int64.max) { return .int(-Int64(magnitude)) }
            if magnitude == UInt64(Int64.max) + 1 { return .int(.min) }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let value = Double(text), value.isFinite else {
            throw QMPValue.ParseError(offset: start, reason: "number \(text) is out of range")
        }
        return .double(value)
    }

    mutating func digits(_ expected: String) throws(QMPValue.ParseError) {
        guard index < bytes.count, isDigit(bytes[index]) else { throw failure("expected \(expected)") }
        while index < bytes.count, isDigit(bytes[index]) { index += 1 }
    }

    func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    // MARK: Strings

    /// A string, from its opening quote: taken from the buffer whole when it has no escape.
    mutating func parseString() throws(QMPValue.ParseError) -> String {
        index += 1
        let start = index
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let text = try validated(UnsafeBufferPointer(rebasing: bytes[start..<index]), at: start)
                index += 1
                return text
            }
            if byte == UInt8(ascii: "\\") { return try parseEscapedString(from: start) }
            guard byte >= 0x20 else { throw failure("control character \(describe(index)) in a string") }
            index += 1
        }
        throw failure("unterminated string")
    }

    /// The rest of a string that holds an escape, decoded into a copy.
    mutating func parseEscapedString(from start: Int) throws(QMPValue.ParseError) -> String {
        var decoded = Array(UnsafeBufferPointer(rebasing: bytes[start..<index]))
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                let text = try decoded.withUnsafeBufferPointer { buffer throws(QMPValue.ParseError) in
                    try validated(buffer, at: start)
                }
                index += 1
                return text
            case UInt8(ascii: "\\"):
                let escapeOffset = index
                index += 1
                guard index < bytes.count else { break }
                let letter = bytes[index]
                index += 1
                switch letter {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): decoded.append(letter)
                case UInt8(ascii: "b"): decoded.append(0x08)
                case UInt8(ascii: "f"): decoded.append(0x0C)
                case UInt8(ascii: "n"): decoded.append(0x0A)
                case UInt8(ascii: "r"): decoded.append(0x0D)
                case UInt8(ascii: "t"): decoded.append(0x09)
                case UInt8(ascii: "u"): appendUTF8(of: try parseUnicodeEscape(at: escapeOffset), to: &decoded)
                default:
                    throw QMPValue.ParseError(offset: escapeOffset, reason: "invalid escape \\\(Character(Unicode.Scalar(letter)))")
                }
            default:
                guard byte >= 0x20 else { throw failure("control character \(describe(index)) in a string") }
                decoded.append(byte)
                index += 1
            }
        }
        throw failure("unterminated string")
    }

    /// The scalar of a `\uXXXX` escape whose `u` was just read, with the low half of a
    /// surrogate pair when it is the high half.
    mutating func parseUnicodeEscape(at offset: Int) throws(QMPValue.ParseError) -> Unicode.Scalar {
        let unit = try hexQuad(at: offset)
        switch unit {
        case 0xD800...0xDBFF:
            guard bytes.count - index >= 2, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                throw QMPValue.ParseError(offset: offset, reason: "unpaired surrogate escape")
            }
            index += 2
            let low = try hexQuad(at: offset)
            guard (0xDC00...0xDFFF).contains(low) else {
                throw QMPValue.ParseError(offset: offset, reason: "unpaired surrogate escape")
            }
            return Unicode.Scalar(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))!
        case 0xDC00...0xDFFF:
            throw QMPValue.ParseError(offset: offset, reason: "unpaired surrogate escape")
        default:
            return Unicode.Scalar(unit)!
        }
    }

    /// Four hexadecimal digits.
    mutating func hexQuad(at offset: Int) throws(QMPValue.ParseError) -> UInt32 {
        guard bytes.count - index >= 4 else { throw QMPValue.ParseError(offset: offset, reason: "short \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw QMPValue.ParseError(offset: offset, reason: "invalid \\u escape")
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }

    func appendUTF8(of scalar: Unicode.Scalar, to bytes: inout [UInt8]) {
        bytes.append(contentsOf: UTF8.encode(scalar)!)
    }

    func validated(_ buffer: UnsafeBufferPointer<UInt8>, at offset: Int) throws(QMPValue.ParseError) -> String {
        guard let text = String(validating: buffer, as: UTF8.self) else {
            throw QMPValue.ParseError(offset: offset, reason: "invalid UTF-8 in a string")
        }
        return text
    }

    // MARK: Bytes

    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"): index += 1
            default: return
            }
        }
    }

    mutating func consume(_ byte: UInt8) -> Bool {
        guard index < bytes.count, bytes[index] == byte else { return false }
        index += 1
        return true
    }

    /// The byte at `offset` for a message: `'x'`, `byte 0x07`, or `end of text`.
    func describe(_ offset: Int) -> String {
        guard offset < bytes.count else { return "end of text" }
        let byte = bytes[offset]
        if byte >= 0x21 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        return "byte 0x\(String(byte, radix: 16, uppercase: true))"
    }

    func failure(_ reason: String) -> QMPValue.ParseError { QMPValue.ParseError(offset: index, reason: reason) }
}

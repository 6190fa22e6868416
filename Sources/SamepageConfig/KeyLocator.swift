/// Where each key of a TOML document is written, and the syntax errors toml++ must not see.
///
/// TOMLKit (toml++ underneath) reports the line and column of a syntax error, but its node
/// API keeps no source positions, so a semantic error ("max_pages must be an integer") could
/// not name its line. The locator recovers them: a small scanner that knows TOML's lexical
/// structure (comments, the four kinds of strings, escapes, table and array-of-tables
/// headers, dotted and quoted keys, inline tables, arrays spanning lines) walks the text and
/// records, for every key path, where the key is first written.
///
/// So `mode = "merge"` inside a multi-line string is not mistaken for a key, `"mode" = ...`
/// and `mode=...` are found, and `[policy.default]`, `policy.default.mode = ...` and
/// `policy = { default = { mode = ... } }` all locate `policy.default.mode`. Positions inside
/// arrays are not recorded: an array is never a valid value here, and is reported at its key.
///
/// The same walk runs before toml++ parses the text and finds the inputs toml++ 3.4.0 would
/// crash on (see ``hazard``), and string escapes of U+0000, which TOMLKit's C interface would
/// silently truncate. It never fails hard: on text it does not understand it stops, and keys
/// not found are reported at their nearest located parent (or without a line).
struct KeyLocator {
    /// A 1-based line and column (in Unicode scalars).
    struct Position: Equatable, Sendable {
        var line: Int
        var column: Int
    }

    /// Key paths from the root, each mapped to where it is first written.
    private(set) var positions: [[String]: Position]
    /// The first `\u0000` or `\U00000000` escape in a basic string.
    private(set) var nulEscape: Position?
    /// The first place where toml++ 3.4.0 would rely on an assumption instead of a check.
    ///
    /// toml++ asserts (in a debug build: abort) or assumes (in a release build: undefined
    /// behaviour) that a table header's name starts like a key, that an array element does not
    /// start with `}`, and that the unquoted values it sniffs are well-formed (`1979-05-27Tx`
    /// and `1979-05-27 0]` are not). So the scanner checks these places itself and the
    /// document never reaches toml++ with one of them. (Found by the fuzz tests.)
    private(set) var hazard: Hazard?

    /// A syntax error that toml++ must not see.
    struct Hazard: Equatable, Sendable {
        /// The UTF-8 offset of the statement it is in: toml++ may parse the text before it.
        var statementOffset: Int
        /// Where the error is.
        var position: Position
        /// What is wrong.
        var message: String
    }

    init(text: String) {
        var scanner = Scanner(bytes: Array(text.utf8))
        scanner.scanDocument()
        positions = scanner.positions
        nulEscape = scanner.nulEscape
        hazard = scanner.hazard
    }

    /// Whether `byte` may be part of a bare (unquoted) key: `A-Z a-z 0-9 _ -`.
    static func isBareKey(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    /// Where `path` is written; failing that, where its nearest located parent is.
    func position(of path: [String]) -> Position? {
        var path = path[...]
        while !path.isEmpty {
            if let position = positions[Array(path)] {
                return position
            }
            path = path.dropLast()
        }
        return nil
    }
}

/// A single-pass scanner over the UTF-8 bytes of a TOML document.
private struct Scanner {
    typealias Position = KeyLocator.Position

    /// Deeper than toml++ accepts (256), so valid documents never hit it.
    static let maximumDepth = 1024

    /// The characters, under a cursor.
    var cursor: TOMLCursor
    var stopped = false
    var positions: [[String]: Position] = [:]
    var hazard: KeyLocator.Hazard?
    /// Where the statement being scanned starts.
    var statementStart = 0

    init(bytes: [UInt8]) {
        cursor = TOMLCursor(bytes: bytes)
    }

    // MARK: Characters, through the cursor

    var bytes: [UInt8] { cursor.bytes }
    var index: Int {
        get { cursor.index }
        set { cursor.index = newValue }
    }
    var nulEscape: Position? { cursor.nulEscape }
    var current: UInt8? { cursor.current }
    var position: Position { cursor.position }
    func peek(_ offset: Int) -> UInt8? { cursor.peek(offset) }
    func describeCurrentCharacter() -> String { cursor.describeCurrentCharacter() }
    mutating func advance() { cursor.advance() }
    mutating func advance(by count: Int) { cursor.advance(by: count) }
    mutating func skipBlanks() { cursor.skipBlanks() }
    mutating func skipTrivia() { cursor.skipTrivia() }
    mutating func skipRestOfLine() { cursor.skipRestOfLine() }

    /// A string's content; an unterminated one stops the scan.
    mutating func scanBasicString() -> String? { stopUnless(cursor.scanBasicString()) }
    mutating func scanLiteralString() -> String? { stopUnless(cursor.scanLiteralString()) }
    mutating func skipMultilineString(quote: UInt8, escapes: Bool) {
        if !cursor.skipMultilineString(quote: quote, escapes: escapes) { stopped = true }
    }

    private mutating func stopUnless(_ content: String?) -> String? {
        if content == nil { stopped = true }
        return content
    }

    /// Records the first hazard, at the cursor unless told otherwise, and stops.
    mutating func flag(_ message: String, at position: Position? = nil) {
        if hazard == nil {
            hazard = KeyLocator.Hazard(
                statementOffset: statementStart, position: position ?? self.position, message: message
            )
        }
        stopped = true
    }

    /// Why an unquoted value is not one, with a hint for the likely mistake.
    static func describeInvalidValue(_ atom: ArraySlice<UInt8>) -> String {
        let text = String(decoding: atom.prefix(40), as: UTF8.self) + (atom.count > 40 ? "..." : "")
        let word = atom.allSatisfy(KeyLocator.isBareKey)
        if word && !atom.contains(where: TOMLCursor.isDigit) {
            return "\(text) is not a value: a string needs quotes, as in \"\(text)\""
        }
        return "\(text) is not a valid value"
    }

    // MARK: Structure

    mutating func record(_ path: [String], at position: Position) {
        if positions[path] == nil {
            positions[path] = position
        }
    }

    mutating func scanDocument() {
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
            index = 3
        }
        var table: [String] = []
        while !stopped {
            skipTrivia()
            guard let byte = current else { return }
            let start = index
            statementStart = start
            if byte == UInt8(ascii: "[") {
                let header = position
                advance()
                if current == UInt8(ascii: "[") { advance() }
                skipBlanks()
                if let byte = current, byte != UInt8(ascii: "]"), byte != UInt8(ascii: "\""),
                    byte != UInt8(ascii: "'"), !KeyLocator.isBareKey(byte)
                {
                    flag("expected a table name after '[', saw \(describeCurrentCharacter())")
                    return
                }
                guard let (keys, _) = scanKey() else {
                    stopped = true
                    return
                }
                for count in 1...keys.count {
                    record(Array(keys[..<count]), at: header)
                }
                table = keys
            } else {
                scanKeyValue(prefix: table, recording: true, depth: 0)
            }
            skipRestOfLine()
            if index == start { stopped = true }
        }
    }

    /// `key = value`, recording the key (and each of its dotted prefixes) under `prefix`.
    mutating func scanKeyValue(prefix: [String], recording: Bool, depth: Int) {
        guard let (keys, position) = scanKey() else {
            stopped = true
            return
        }
        if recording {
            for count in 1...keys.count {
                record(prefix + keys[..<count], at: position)
            }
        }
        skipBlanks()
        guard current == UInt8(ascii: "=") else {
            stopped = true
            return
        }
        advance()
        skipBlanks()
        scanValue(path: recording ? prefix + keys : nil, depth: depth)
    }

    /// A dotted key, `a . "b" . 'c'`, and where it starts.
    mutating func scanKey() -> ([String], Position)? {
        let start = position
        guard let first = scanSimpleKey() else { return nil }
        var keys = [first]
        while !stopped {
            skipBlanks()
            guard current == UInt8(ascii: ".") else { break }
            advance()
            skipBlanks()
            guard let next = scanSimpleKey() else { return nil }
            keys.append(next)
        }
        return (keys, start)
    }

    mutating func scanSimpleKey() -> String? {
        guard let byte = current else { return nil }
        if byte == UInt8(ascii: "\"") {
            advance()
            return scanBasicString()
        }
        if byte == UInt8(ascii: "'") {
            advance()
            return scanLiteralString()
        }
        let start = index
        while let byte = current, KeyLocator.isBareKey(byte) { advance() }
        guard index > start else { return nil }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    /// Any value; the keys of inline tables are recorded under `path` unless it is nil.
    mutating func scanValue(path: [String]?, depth: Int) {
        guard depth < Self.maximumDepth, let byte = current else {
            stopped = true
            return
        }
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "'"):
            // Basic strings (`"`) take escapes, literal ones (`'`) do not; either may be multi-line.
            let escapes = byte == UInt8(ascii: "\"")
            if peek(1) == byte, peek(2) == byte {
                advance(by: 3)
                skipMultilineString(quote: byte, escapes: escapes)
            } else {
                advance()
                _ = escapes ? scanBasicString() : scanLiteralString()
            }
        case UInt8(ascii: "["):
            advance()
            scanElements(closing: UInt8(ascii: "]")) { $0.scanValue(path: nil, depth: depth + 1) }
        case UInt8(ascii: "{"):
            advance()
            scanElements(closing: UInt8(ascii: "}")) {
                $0.scanKeyValue(prefix: path ?? [], recording: path != nil, depth: depth + 1)
            }
        default:
            let start = index
            let startPosition = position
            while let byte = current, !TOMLCursor.endsValue(byte) { advance() }
            // A date-time may have a space between date and time.
            if current == UInt8(ascii: " "), let next = peek(1), TOMLCursor.isDigit(next),
                ScalarSyntax.isFullDate(bytes[start..<index])
            {
                advance()
                while let byte = current, !TOMLCursor.endsValue(byte) { advance() }
            }
            let atom = bytes[start..<index]
            if atom.isEmpty {
                flag("expected a value, saw \(describeCurrentCharacter())")
            } else if !ScalarSyntax.isValid(atom) {
                flag(Self.describeInvalidValue(atom), at: startPosition)
            }
        }
    }

    /// After the opening bracket of an array or brace of an inline table: its elements, each
    /// scanned by `scanElement` and followed by an optional comma, through `closing`. Trivia
    /// (line breaks and comments included) may stand between them.
    mutating func scanElements(closing: UInt8, _ scanElement: (inout Scanner) -> Void) {
        while !stopped {
            skipTrivia()
            guard let byte = current else {
                stopped = true
                return
            }
            if byte == closing {
                advance()
                return
            }
            let before = index
            scanElement(&self)
            skipTrivia()
            if current == UInt8(ascii: ",") { advance() }
            if index == before { stopped = true }
        }
    }
}

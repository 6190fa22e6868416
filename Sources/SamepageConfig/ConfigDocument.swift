import TOMLKit

/// A parsed TOML file and the errors found while reading values out of it.
///
/// Parsing is TOMLKit's (toml++), which reports syntax errors with their line and column;
/// the ``KeyLocator`` supplies the lines of keys for the errors found afterwards.
final class ConfigDocument {
    let file: String
    let root: TOMLTable
    private let locator: KeyLocator
    private(set) var errors: [ConfigError] = []

    /// Parses checked text; a syntax error (or an escaped NUL) is thrown with its position.
    init(source: ConfigSource) throws(ConfigError) {
        file = source.file
        locator = KeyLocator(text: source.text)
        if let hazard = locator.hazard {
            // toml++ must not see this (see KeyLocator.hazard), but an error in an earlier
            // statement is the one toml++ would have reported first.
            let prefix = String(decoding: source.text.utf8.prefix(hazard.statementOffset), as: UTF8.self)
            _ = try Self.parse(prefix, file: source.file)
            throw ConfigError(
                file: source.file, line: hazard.position.line, column: hazard.position.column,
                message: "syntax error: \(hazard.message)"
            )
        }
        root = try Self.parse(source.text, file: source.file)
        if let position = locator.nulEscape {
            throw ConfigError(
                file: source.file, line: position.line, column: position.column,
                message: "strings may not contain U+0000"
            )
        }
    }

    /// Parses with TOMLKit, translating its syntax errors.
    private static func parse(_ text: String, file: String) throws(ConfigError) -> TOMLTable {
        do {
            return try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            let begin = error.source.begin
            throw ConfigError(
                file: file,
                line: begin.line > 0 ? begin.line : nil,
                column: begin.column > 0 ? begin.column : nil,
                message: "syntax error: \(error.description)"
            )
        } catch {
            throw ConfigError(file: file, message: "syntax error: \(error)")
        }
    }

    /// Records an error at the key `path` (from the root), or at its nearest located parent.
    func error(at path: [String], _ message: String) {
        let position = locator.position(of: path)
        errors.append(ConfigError(file: file, line: position?.line, column: position?.column, message: message))
    }

    /// A reader over the root table.
    func rootReader() -> TableReader {
        TableReader(document: self, table: root, path: [])
    }

    /// The errors in file order.
    var sortedErrors: [ConfigError] { errors.sorted() }
}

/// Reads the values of one table, checking their types, and reports the keys nobody read.
///
/// Every getter marks its key as known, whether or not it is present; ``finish(expected:)``
/// then reports every other key of the table as unknown, with a suggestion when one is close.
struct TableReader {
    let document: ConfigDocument
    let path: [String]
    private let values: [String: TOMLValue]
    private var known: [String] = []

    init(document: ConfigDocument, table: TOMLTable, path: [String]) {
        self.document = document
        self.path = path
        // TOMLKit's keys and values come from one iteration of the same std::map, so they pair
        // up. (Its Sequence conformance force-unwraps a second lookup; this does not.)
        let keys = table.keys
        let values = table.values
        self.values = Dictionary(zip(keys, values), uniquingKeysWith: { first, _ in first })
    }

    /// The dotted name of `key` in this table, as it would be written in the file.
    func name(_ key: String) -> String {
        (path + [key]).map(Self.quotedIfNeeded).joined(separator: ".")
    }

    /// Records an error at `key` of this table.
    func error(at key: String, _ message: String) {
        document.error(at: path + [key], message)
    }

    /// The raw value at `key`, marking the key as known.
    mutating func value(_ key: String) -> TOMLValue? {
        if !known.contains(key) {
            known.append(key)
        }
        return values[key]
    }

    /// Whether the table sets `key` (without marking it as known).
    func contains(_ key: String) -> Bool {
        values[key] != nil
    }

    mutating func string(_ key: String) -> String? {
        typed(key, .string) { $0.string }
    }

    mutating func integer(_ key: String) -> Int? {
        typed(key, .int) { $0.int }
    }

    mutating func bool(_ key: String) -> Bool? {
        typed(key, .bool) { $0.bool }
    }

    /// An array of strings; an array holding anything else is reported and ignored.
    mutating func strings(_ key: String) -> [String]? {
        guard let array = typed(key, .array, { $0.array }) else { return nil }
        let strings = array.compactMap { $0.string }
        guard strings.count == array.count else {
            error(at: key, "\(name(key)) must be an array of strings")
            return nil
        }
        return strings
    }

    /// An integer that must lie in `range`; out-of-range values are reported and ignored.
    mutating func integer(_ key: String, in range: ClosedRange<Int>, describedAs expected: String? = nil) -> Int? {
        guard let value = integer(key) else { return nil }
        guard range.contains(value) else {
            let expected = expected ?? Self.describe(range)
            error(at: key, "\(name(key)) = \(value) is out of range: expected \(expected)")
            return nil
        }
        return value
    }

    /// A string that `problem` finds nothing wrong with; otherwise its problem is reported (as
    /// `key = "value" problem`) and the value ignored.
    mutating func string(_ key: String, checkedBy problem: (String) -> String?) -> String? {
        guard let string = string(key) else { return nil }
        if let problem = problem(string) {
            error(at: key, "\(name(key)) = \(Self.quoted(string)) \(problem)")
            return nil
        }
        return string
    }

    /// One of a fixed set of values, each written as its `name`: every case of `Value`, in
    /// its order (which the error lists).
    mutating func choice<Value: CaseIterable>(_ key: String, named name: (Value) -> String) -> Value? {
        guard let string = string(key) else { return nil }
        if let match = Value.allCases.first(where: { name($0) == string }) {
            return match
        }
        let names = Value.allCases.map { "\"\(name($0))\"" }.joined(separator: ", ")
        error(at: key, "\(self.name(key)) = \(Self.quoted(string)) is not valid: expected one of \(names)")
        return nil
    }

    /// A sub-table; a value of another type is reported as an error.
    mutating func table(_ key: String) -> TableReader? {
        guard let value = value(key) else { return nil }
        guard value.type == .table, let table = value.table else {
            error(at: key, "[\(name(key))] must be a table, not \(Self.article(value.type))")
            return nil
        }
        return TableReader(document: document, table: table, path: path + [key])
    }

    /// Reads the sub-table `key` with `read`, when the table has one, then reports the keys
    /// `read` did not ask for (``finish()``).
    mutating func section(_ key: String, _ read: (inout TableReader) -> Void) {
        guard var section = table(key) else { return }
        read(&section)
        section.finish()
    }

    /// Reports every key that no getter asked for.
    func finish() {
        for (key, value) in values.sorted(by: { $0.key < $1.key }) where !known.contains(key) {
            let what = value.type == .table ? "section [\(name(key))]" : "key \(Self.quoted(key))"
            let place = path.isEmpty ? "" : " in [\(path.map(Self.quotedIfNeeded).joined(separator: "."))]"
            var message = "unknown \(what)\(place)"
            if let suggestion = Self.suggestion(for: key, among: known) {
                message += "; did you mean \(Self.quoted(suggestion))?"
            } else if !known.isEmpty {
                message += " (expected \(known.map(Self.quoted).joined(separator: ", ")))"
            }
            error(at: key, message)
        }
    }

    private mutating func typed<Value>(_ key: String, _ type: TOMLType, _ get: (TOMLValue) -> Value?) -> Value? {
        guard let value = value(key) else { return nil }
        guard value.type == type, let typed = get(value) else {
            error(at: key, "\(name(key)) must be \(Self.article(type)), not \(Self.article(value.type))")
            return nil
        }
        return typed
    }

    // MARK: Wording

    static func article(_ type: TOMLType) -> String {
        switch type {
        case .table: return "a table"
        case .array: return "an array"
        case .string: return "a string"
        case .int: return "an integer"
        case .double: return "a floating-point number"
        case .bool: return "a boolean (true or false)"
        case .date: return "a date"
        case .time: return "a time"
        case .dateTime: return "a date-time"
        }
    }

    static func describe(_ range: ClosedRange<Int>) -> String {
        if range.upperBound == Int.max {
            return "\(range.lowerBound) or more"
        }
        return "\(range.lowerBound) to \(range.upperBound)"
    }

    /// A string as TOML would write it (basic string, escapes for quotes and controls).
    static func quoted(_ string: String) -> String {
        var result = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            case "\r": result += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    result += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                        + String(scalar.value, radix: 16)
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result + "\""
    }

    /// A key as written in a dotted path: bare when it can be.
    static func quotedIfNeeded(_ key: String) -> String {
        let bare = !key.isEmpty && key.utf8.allSatisfy(KeyLocator.isBareKey)
        return bare ? key : quoted(key)
    }

    /// The known key closest to a misspelt one, if it is close enough to be a typo.
    static func suggestion(for key: String, among candidates: [String]) -> String? {
        let key = Array(key.lowercased().unicodeScalars)
        guard key.count <= 64 else { return nil }
        var best: (candidate: String, distance: Int)?
        for candidate in candidates {
            let distance = editDistance(key, Array(candidate.unicodeScalars))
            if distance <= max(1, candidate.count / 3), distance < (best?.distance ?? .max) {
                best = (candidate, distance)
            }
        }
        return best?.candidate
    }

    /// Levenshtein distance, with a transposition of neighbours counted as one edit.
    static func editDistance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous2 = [Int](repeating: 0, count: b.count + 1)
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    current[j] = min(current[j], previous2[j - 2] + 1)
                }
            }
            (previous2, previous, current) = (previous, current, previous2)
        }
        return previous[b.count]
    }
}

import Foundation
import Testing
import TestSupport

/// The repository's root, found from this file's path.
let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent()  // SamepageConfigTests
    .deletingLastPathComponent()  // Tests
    .deletingLastPathComponent()

/// Messages of errors that concern a whole file, the only ones allowed to have no line.
func isWholeFileError(_ message: String) -> Bool {
    message.hasPrefix("file is too large") || message.hasPrefix("cannot ")
}

/// Random mutations of a text: byte flips, insertions of TOML punctuation, deletions,
/// duplicated and swapped lines.
func mutate(_ text: String, using rng: inout SplitMix64) -> [UInt8] {
    var bytes = Array(text.utf8)
    let fragments: [[UInt8]] = [
        "[", "]", "[[", "]]", "{", "}", "=", "\"", "'", "\"\"\"", "'''", "#", "\n", ".", ",", "\\",
        "\\u0000", "0x", "1e9", "-", "true", "inf", "nan", "1979-05-27T07:32:00Z", "\r\n", "\t", " ",
        "é", "\u{FEFF}", "a.b", "mode", "[policy.default]", "= {", "[scan]", "9999999999999999999999",
        "[=", "[ #", "[[ ", "[ [", "[.", "[]", "[\"", "{}", "{ a = 1, }", "\\U0010FFFF", "\u{0B}", "\u{0C}",
        "+", "_", ":", "T", "0b", "0o", "-0", "+inf", "1_000", "\"\"\"\"", "''''", "\\\n", "\r",
    ].map { Array($0.utf8) }
    let edits = Int.random(in: 1...6, using: &rng)
    for _ in 0..<edits {
        let position = bytes.isEmpty ? 0 : Int.random(in: 0...bytes.count, using: &rng)
        switch Int.random(in: 0..<6, using: &rng) {
        case 0 where !bytes.isEmpty && position < bytes.count:
            bytes[position] = UInt8.random(in: 0...255, using: &rng)
        case 1:
            bytes.insert(contentsOf: fragments.randomElement(using: &rng)!, at: position)
        case 2 where !bytes.isEmpty:
            let end = min(bytes.count, position + Int.random(in: 1...20, using: &rng))
            bytes.removeSubrange(position..<end)
        case 3:
            var lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            if let line = lines.randomElement(using: &rng) {
                lines.insert(line, at: Int.random(in: 0...lines.count, using: &rng))
            }
            bytes = Array(lines.joined(separator: [UInt8(ascii: "\n")]))
        case 4:
            var lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            if lines.count > 1 {
                lines.swapAt(Int.random(in: 0..<lines.count, using: &rng), Int.random(in: 0..<lines.count, using: &rng))
            }
            bytes = Array(lines.joined(separator: [UInt8(ascii: "\n")]))
        default:
            bytes.insert(UInt8.random(in: 0...127, using: &rng), at: position)
        }
    }
    return bytes
}

/// Random bytes: raw, printable ASCII, or a soup of TOML tokens.
func randomInput(using rng: inout SplitMix64) -> [UInt8] {
    let length = Int.random(in: 0...600, using: &rng)
    switch Int.random(in: 0..<4, using: &rng) {
    case 3:
        return Array(randomDocument(using: &rng).utf8)
    case 0:
        return (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
    case 1:
        return (0..<length).map { _ in
            Bool.random(using: &rng) ? UInt8(ascii: "\n") : UInt8.random(in: 32...126, using: &rng)
        }
    default:
        let tokens = [
            "mode", "max_pages", "trust_group", "=", " ", "\n", "[", "]", "{", "}", "\"", "'", "\"off\"", "1", "-5",
            "true", ",", ".", "#", "[[x]]", "\"\"\"", "'''", "1.5", "scan", "policy", "default", "\\", "\\u0000",
            "[policy.default]", "{ mode = \"merge\" }", "[=", "[ ", "[[", "]]", "{}", "\r\n", "\t", "e", "+", "_",
            ":", "T", "Z", "0x", "0o", "0b", "inf", "nan", "false", "\\U", "\\u", "é", "\u{FEFF}", "\u{0B}", "\r",
            "1979-05-27", "07:32:00", "a", "b", "-", "\"\"", "''",
        ]
        var text = ""
        for _ in 0..<(length / 4) { text += tokens.randomElement(using: &rng)! }
        return Array(text.utf8)
    }
}

/// The number of lines in `bytes`, counting a last line without a line break.
func lineCount(_ bytes: [UInt8]) -> Int {
    bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).count
}

/// Inputs per fuzz test: 500, or SAMEPAGE_FUZZ_ITERATIONS for a longer campaign.
let fuzzIterations: UInt64 = ProcessInfo.processInfo.environment["SAMEPAGE_FUZZ_ITERATIONS"].flatMap { UInt64($0) } ?? 500

/// With SAMEPAGE_FUZZ_TRACE=DIR, each input is written to DIR/<label> before it is parsed, so
/// an input that crashes the process is left behind.
func traceFuzzInput(_ bytes: [UInt8], label: String) {
    guard let directory = ProcessInfo.processInfo.environment["SAMEPAGE_FUZZ_TRACE"] else { return }
    try? Data(bytes).write(to: URL(fileURLWithPath: directory + "/" + label))
}

/// A document built from TOML's grammar with near misses mixed in: headers, key/value pairs,
/// arrays and inline tables of scalars that are valid, almost valid, or not at all.
func randomDocument(using rng: inout SplitMix64) -> String {
    let keys = ["mode", "max_pages", "a", "b.c", "\"q k\"", "'lit'", "scan", "policy.default", "1979-05-27", "-", "_"]
    let atoms = [
        "true", "false", "0", "-1", "+1_000", "0x1F", "0o7", "0b1", "1.5", "-2e-3", "inf", "-nan", "1979-05-27",
        "07:32:00", "1979-05-27T07:32:00Z", "1979-05-27 07:32:00", "1979-05-27T07:32:00.5+01:00",
        "1979-05-27T", "1979-05-27Tx", "1979-05-27 0", "1979-05-27 07", "19_79-05-27 0", "07:32", "1_", "01", ".5",
        "1.", "0x", "tru", "nan1", "+", "-", "1979-13-45", "25:61:61", "9999999999999999999", "\"s\"", "'l'",
        "\"\"\"m\nl\"\"\"", "'''m\nl'''", "\"\\u0041\"", "\"\\x\"",
    ]
    let separators = [" ", "", "\t", "  "]
    func value(_ depth: Int, _ rng: inout SplitMix64) -> String {
        switch depth < 3 ? Int.random(in: 0..<8, using: &rng) : 0 {
        case 6:
            let count = Int.random(in: 0...3, using: &rng)
            let items = (0..<count).map { _ in value(depth + 1, &rng) }
            let closer = ["]", "}", ",]", "", " ]"].randomElement(using: &rng)!
            return "[" + items.joined(separator: [",", ", ", ",\n", " "].randomElement(using: &rng)!) + closer
        case 7:
            let count = Int.random(in: 0...2, using: &rng)
            let items = (0..<count).map { _ in keys.randomElement(using: &rng)! + " = " + value(depth + 1, &rng) }
            return "{" + items.joined(separator: ", ") + ["}", "]", ",}", ""].randomElement(using: &rng)!
        default:
            return atoms.randomElement(using: &rng)!
        }
    }
    var text = ""
    for _ in 0..<Int.random(in: 1...8, using: &rng) {
        let space = separators.randomElement(using: &rng)!
        switch Int.random(in: 0..<5, using: &rng) {
        case 0:
            let opener = ["[", "[[", "[ ", "[ [", "["].randomElement(using: &rng)!
            let name = (keys + ["=", "#", "}", "", "é", "\u{0B}"]).randomElement(using: &rng)!
            text += opener + space + name + space + ["]", "]]", "", "] x"].randomElement(using: &rng)! + "\n"
        case 1:
            text += "# " + atoms.randomElement(using: &rng)! + "\n"
        default:
            let key = keys.randomElement(using: &rng)!
            text += key + space + ["=", "= ", "", "=="].randomElement(using: &rng)! + space + value(0, &rng)
                + ["\n", " # c\n", "", "\r\n", " x\n"].randomElement(using: &rng)!
        }
    }
    return text
}

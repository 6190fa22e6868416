import SamepageModel
import Testing
@testable import SamepageConfig
import TestSupport

@Suite struct PolicyFileTests {
    let file = "guests.d/web1.toml"

    /// The single error of `text`, checked to be the only one.
    func onlyError(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> ConfigError? {
        let errors = PolicyFile.validate(text: text, file: file)
        #expect(errors.count == 1, "\(errors)", sourceLocation: sourceLocation)
        if let first = errors.first {
            #expect(throws: first, sourceLocation: sourceLocation) { try PolicyFile.parse(text: text, file: file) }
        }
        return errors.first
    }

    @Test func everyKey() throws {
        let text = """
            # A web server.
            mode = "merge"
            trust_group = "web.tier-1_a"
            max_pages = 4096
            max_pause_ms = 25
            max_pause_ms_per_minute = 1000
            reclaim_hugetlbfs = true
            """
        let policy = try PolicyFile.parse(text: text, file: file)
        #expect(policy == GuestPolicy(
            mode: .merge, trustGroup: "web.tier-1_a", maxPages: 4096, maxPauseMs: 25, maxPauseMsPerMinute: 1000,
            reclaimHugetlbfs: true
        ))
    }

    @Test(arguments: ["", "\n\n", "# only a comment\n", "\u{FEFF}", "   \t\n# x\r\n"])
    func emptyIsAllDefaults(text: String) throws {
        #expect(try PolicyFile.parse(text: text, file: file) == GuestPolicy())
    }

    /// `trust_group = ""` means none, as in `[kernel_ksm]`: a group of the guest's own.
    @Test func emptyTrustGroupIsNone() throws {
        let policy = try PolicyFile.parse(text: "mode = \"merge\"\ntrust_group = \"\"", file: file)
        #expect(policy.mode == .merge)
        #expect(policy.trustGroup == nil)
        let daemon = try DaemonConfiguration.parse(text: "[policy.default]\ntrust_group = \"\"", file: file)
        #expect(daemon.defaultPolicy.trustGroup == nil)
    }

    @Test(arguments: [("off", PolicyMode.off), ("report", .report), ("zero", .zero), ("merge", .merge)])
    func modes(name: String, mode: PolicyMode) throws {
        #expect(try PolicyFile.parse(text: "mode = \"\(name)\"", file: file).mode == mode)
        #expect(try PolicyFile.parse(text: "mode = '\(name)'", file: file).mode == mode)
    }

    @Test func boundaries() throws {
        let low = try PolicyFile.parse(text: "max_pause_ms = 1\nmax_pause_ms_per_minute = 1\nmax_pages = 0", file: file)
        #expect(low.maxPauseMs == 1 && low.maxPauseMsPerMinute == 1 && low.maxPages == 0)
        let high = try PolicyFile.parse(text: "max_pause_ms = 1000\nmax_pause_ms_per_minute = 60000", file: file)
        #expect(high.maxPauseMs == 1000 && high.maxPauseMsPerMinute == 60000)
        // 0 forbids pausing, whatever max_pause_ms is.
        let none = try PolicyFile.parse(text: "max_pause_ms = 500\nmax_pause_ms_per_minute = 0", file: file)
        #expect(none.maxPauseMsPerMinute == 0)
        let group = String(repeating: "g", count: 64)
        #expect(try PolicyFile.parse(text: "trust_group = '\(group)'", file: file).trustGroup == group)
        // TOML's other integer spellings are integers too.
        #expect(try PolicyFile.parse(text: "max_pages = 0x10_00", file: file).maxPages == 4096)
    }

    // MARK: Errors, each at its exact line

    @Test func unknownKeySuggestsTheClosest() {
        let error = onlyError("mode = \"zero\"\n\nmdoe = \"merge\"\n")
        #expect(error?.line == 3)
        #expect(error?.column == 1)
        #expect(error?.description == "guests.d/web1.toml:3: unknown key \"mdoe\"; did you mean \"mode\"?")
    }

    @Test func unknownKeyListsTheKnownOnes() {
        let error = onlyError("# policy\n   colour = \"blue\"")
        #expect(error?.line == 2)
        #expect(error?.column == 4)
        #expect(error?.message.hasPrefix("unknown key \"colour\" (expected \"mode\", \"trust_group\"") == true)
    }

    @Test func sectionsAreUnknown() {
        #expect(onlyError("mode = \"off\"\n\n[extra]\nfoo = 1\n")?.line == 3)
        #expect(onlyError("mode = \"off\"\n\n[extra]\nfoo = 1\n")?.message.hasPrefix("unknown section [extra] (expected \"mode\"") == true)
        // A dotted key makes a table too.
        #expect(onlyError("\nsettings.mode = \"off\"")?.line == 2)
        #expect(onlyError("[[many]]\n[[many]]")?.line == 1)
    }

    @Test(arguments: [
        ("max_pages = \"5\"", "max_pages must be an integer, not a string"),
        ("mode = 3", "mode must be a string, not an integer"),
        ("reclaim_hugetlbfs = \"yes\"", "reclaim_hugetlbfs must be a boolean (true or false), not a string"),
        ("max_pause_ms = 1.5", "max_pause_ms must be an integer, not a floating-point number"),
        ("max_pause_ms = 1e3", "max_pause_ms must be an integer, not a floating-point number"),
        ("trust_group = [\"a\", \"b\"]", "trust_group must be a string, not an array"),
        ("max_pages = { value = 5 }", "max_pages must be an integer, not a table"),
        ("mode = 1979-05-27", "mode must be a string, not a date"),
        ("max_pages = 2024-01-01T00:00:00Z", "max_pages must be an integer, not a date-time"),
        ("max_pages = true", "max_pages must be an integer, not a boolean (true or false)"),
    ])
    func wrongTypes(line: String, message: String) {
        let error = onlyError("# header\n\n\(line)\n")
        #expect(error?.line == 3)
        #expect(error?.message == message)
    }

    @Test func tableWhereAValueIsExpected() {
        let error = onlyError("mode = \"zero\"\n[trust_group]\nname = \"x\"\n")
        #expect(error?.line == 2)
        #expect(error?.message == "trust_group must be a string, not a table")
    }

    @Test(arguments: [
        ("max_pause_ms = 0", "max_pause_ms = 0 is out of range: expected 1 to 1000"),
        ("max_pause_ms = 1001", "max_pause_ms = 1001 is out of range: expected 1 to 1000"),
        ("max_pause_ms_per_minute = -1", "max_pause_ms_per_minute = -1 is out of range: expected 0 to 60000"),
        ("max_pause_ms_per_minute = 60001", "max_pause_ms_per_minute = 60001 is out of range: expected 0 to 60000"),
        ("max_pages = -1", "max_pages = -1 is out of range: expected 0 (unlimited) or more"),
        ("mode = \"fast\"", "mode = \"fast\" is not valid: expected one of \"off\", \"report\", \"zero\", \"merge\""),
        ("mode = \"Merge\"", "mode = \"Merge\" is not valid: expected one of \"off\", \"report\", \"zero\", \"merge\""),
        ("trust_group = \"a b\"", "trust_group = \"a b\" may contain only letters, digits, '.', '_' and '-'"),
        ("trust_group = \"été\"", "trust_group = \"été\" may contain only letters, digits, '.', '_' and '-'"),
        ("trust_group = \"a/b\"", "trust_group = \"a/b\" may contain only letters, digits, '.', '_' and '-'"),
    ])
    func outOfRange(line: String, message: String) {
        let error = onlyError("\n\n\n\(line)")
        #expect(error?.line == 4)
        #expect(error?.message == message)
    }

    @Test func trustGroupTooLong() {
        let error = onlyError("trust_group = \"\(String(repeating: "x", count: 65))\"")
        #expect(error?.line == 1)
        #expect(error?.message.hasSuffix("is too long: at most 64 characters") == true)
    }

    @Test func pauseBudgetBelowOnePause() {
        // Reported at the per-minute key when the file sets it ...
        let both = onlyError("max_pause_ms = 100\n# budget\nmax_pause_ms_per_minute = 50\n")
        #expect(both?.line == 3)
        #expect(both?.message.hasPrefix("max_pause_ms_per_minute = 50 is less than max_pause_ms = 100") == true)
        // ... and at max_pause_ms when the budget is the default (200).
        let alone = onlyError("\nmax_pause_ms = 300\n")
        #expect(alone?.line == 2)
        // An invalid value is reported once, not again as a budget problem.
        #expect(onlyError("max_pause_ms = 5000\nmax_pause_ms_per_minute = 100")?.line == 1)
    }

    @Test func duplicateKeysAreSyntaxErrors() {
        let error = onlyError("mode = \"off\"\nmax_pages = 1\nmode = \"zero\"\n")
        #expect(error?.line == 3)
        #expect(error?.message.hasPrefix("syntax error: ") == true)
        #expect(onlyError("\"mode\" = \"off\"\nmode = \"zero\"")?.line == 2)
    }

    @Test(arguments: [
        ("mode = \"off\"\n\nthis is not toml\n", 3),
        ("mode = ", 1),
        ("mode = \"off\"\nmax_pages = 12abc\n", 2),
        ("mode = \"off\nmax_pages = 1\n", 1),
        ("\n\nmax_pages = 99999999999999999999\n", 3),
        ("[unterminated\nmode = \"off\"", 1),
        ("mode = \"off\" max_pages = 1", 1),
        ("\n\n\n\n\nmode = \"\\q\"", 6),
    ])
    func syntaxErrors(text: String, line: Int) {
        let error = onlyError(text)
        #expect(error?.line == line)
        #expect(error?.column != nil)
        #expect(error?.message.hasPrefix("syntax error: ") == true)
    }

    /// toml++ 3.4.0 asserts (debug) or assumes (release) that a table name starts like a key;
    /// these must be caught before it sees them.
    @Test(arguments: [
        ("[=]", 1, 2, "'='"), ("mode = \"off\"\n[[=]]", 2, 3, "'='"), ("\n\n  [ #]", 3, 5, "'#'"),
        ("[\t,]", 1, 3, "','"), ("[\u{0B}]", 1, 2, "U+000B"), ("[ [a]]", 1, 3, "'['"), ("[é]", 1, 2, "'é'"),
        ("[\u{7F}", 1, 2, "U+007F"),
    ])
    func tableNamesThatDoNotStartLikeKeys(text: String, line: Int, column: Int, found: String) {
        let error = onlyError(text)
        #expect(error?.line == line)
        #expect(error?.column == column)
        #expect(error?.message == "syntax error: expected a table name after '[', saw \(found)")
    }

    @Test func anEarlierSyntaxErrorWinsOverABadTableName() {
        let error = onlyError("mode = \"off\"\nmax_pages = \n[=]")
        #expect(error?.line == 2)
        #expect(error?.message.hasPrefix("syntax error: ") == true)
        #expect(error?.message.contains("table name") == false)
        // Not a header at all: inside a multi-line string.
        #expect(onlyError("notes = \"\"\"\n[=]\n\"\"\"")?.message.hasPrefix("unknown key \"notes\"") == true)
    }

    @Test func everyErrorIsReportedInFileOrder() {
        let text = """
            mode = "everything"
            trust_group = "ok"
            max_pages = "lots"
            [extra]
            max_pause_ms = 0
            """
        let errors = PolicyFile.validate(text: text, file: file)
        #expect(errors.map(\.line) == [1, 3, 4])
        #expect(errors.allSatisfy { $0.file == file })
    }

    @Test func keysInsideStringsAreNotKeys() {
        // The multi-line string holds text that looks like keys; the real key is on line 5.
        let text = """
            notes = '''
            max_pages = "x"
            mode = 3
            '''
            max_pages = "y"
            """
        let errors = PolicyFile.validate(text: text, file: file)
        #expect(errors.map(\.line) == [1, 5])
        #expect(errors.map(\.message) == [
            "unknown key \"notes\" (expected \"mode\", \"trust_group\", \"max_pages\", \"max_pause_ms\", "
                + "\"max_pause_ms_per_minute\", \"reclaim_hugetlbfs\")",
            "max_pages must be an integer, not a string",
        ])
    }

    @Test func quotedAndOddlySpacedKeys() {
        #expect(onlyError("# x\n\n  \"max_pages\"=\"5\"")?.line == 3)
        #expect(onlyError("# x\n'max_pages'   =   \"5\"")?.line == 2)
        #expect(PolicyFile.validate(text: "a = \"\"\"\nline\n\"\"\"\"\n\tmax_pages = \"5\"", file: file).map(\.line) == [1, 4])
        let basic = PolicyFile.validate(text: "s = \"a \\\" mode = 1 \\\\\"\n\"mode\" = 2", file: file)
        #expect(basic.map(\.line) == [1, 2])
        // An escaped key name is still that key.
        #expect(onlyError("\n\"max_\\u0070ages\" = true")?.message == "max_pages must be an integer, not a boolean (true or false)")
    }

    @Test func multiLineArraysAndInlineTables() {
        let text = """
            list = [
              "a", # a comment ] with a bracket
              { mode = 1 },
              [1, [2, "]"]],
            ]
            nested = { inner = { deep = 1 } }
            max_pages = [ ]
            """
        let errors = PolicyFile.validate(text: text, file: file)
        #expect(errors.map(\.line) == [1, 6, 7])
        #expect(errors[1].message.hasPrefix("unknown section [nested]"))
    }

    // MARK: Bytes that are not a policy

    @Test func nulCharacter() {
        let errors = PolicyFile.validate(text: "mode = \"off\"\nmax_pages = 1\u{0}\n", file: file)
        #expect(errors.count == 1)
        #expect(errors.first?.line == 2)
        #expect(errors.first?.message == "file contains a NUL character")
    }

    @Test func escapedNul() {
        // TOMLKit hands strings to Swift as C strings: "a\u0000b" would silently become "a".
        let error = onlyError("mode = \"off\"\ntrust_group = \"a\\u0000b\"\n")
        #expect(error?.line == 2)
        #expect(error?.column == 17)
        #expect(error?.message == "strings may not contain U+0000")
    }

    @Test func notUTF8() {
        let bytes = Array("mode = \"off\"\n# comment\ntrust_group = \"".utf8) + [0xC3, 0x28] + Array("\"\n".utf8)
        #expect(throws: ConfigError(file: file, line: 3, column: 16, message: "file is not valid UTF-8 text")) {
            try PolicyFile.parse(bytes: bytes, file: file)
        }
        // An encoded surrogate is not UTF-8 either.
        #expect(throws: ConfigError.self) { try PolicyFile.parse(bytes: [0xED, 0xA0, 0x80], file: file) }
    }

    @Test func hugeFile() {
        let text = String(repeating: "# padding padding padding padding padding padding padding\n", count: 2000)
        let errors = PolicyFile.validate(text: text, file: file)
        #expect(errors.count == 1)
        #expect(errors.first?.line == nil)
        #expect(errors.first?.description.hasPrefix("guests.d/web1.toml: file is too large (") == true)
    }

    /// Files at the size limit, with thousands of keys on one line or on as many lines, take
    /// no time to reject (no work grows with the square of the file).
    @Test func manyKeysAtTheSizeLimit() {
        var oneLine = "x = {"
        var index = 0
        while oneLine.utf8.count < PolicyFile.maximumSize - 20 {
            oneLine += "k\(index) = 1, "
            index += 1
        }
        oneLine += "k = 1}"
        var manyLines = ""
        index = 0
        while manyLines.utf8.count < PolicyFile.maximumSize - 20 {
            manyLines += "k\(index) = 1\n"
            index += 1
        }
        let clock = ContinuousClock()
        let elapsed = clock.measure {
            #expect(PolicyFile.validate(text: oneLine, file: file).map(\.line) == [1])
            let errors = PolicyFile.validate(text: manyLines, file: file)
            #expect(errors.count == index)
            #expect(errors.last?.line == index)
        }
        #expect(elapsed < .seconds(10))
    }

    @Test func deeplyNested() {
        let deep = String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)
        let errors = PolicyFile.validate(text: "max_pages = \(deep)", file: file)
        #expect(errors.count == 1)
        #expect(errors.first?.line == 1)
    }

    @Test func files() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("web1.toml", "mode = \"zero\"\n")
        #expect(try PolicyFile.load(path: directory.file("web1.toml")).mode == .zero)

        try directory.write("bad.toml", "\nmode = 0\n")
        #expect(PolicyFile.validate(path: directory.file("bad.toml")).map(\.description)
            == ["\(directory.file("bad.toml")):2: mode must be a string, not an integer"])

        #expect(PolicyFile.validate(path: directory.file("missing.toml")).map(\.description)
            == ["\(directory.file("missing.toml")): cannot open: No such file or directory"])
        #expect(PolicyFile.validate(path: directory.path).map(\.message) == ["cannot read: a directory"])

        try directory.write("huge.toml", String(repeating: "#", count: PolicyFile.maximumSize + 1))
        #expect(PolicyFile.validate(path: directory.file("huge.toml")).first?.message.hasPrefix("file is too large") == true)
        try directory.write("limit.toml", String(repeating: "#", count: PolicyFile.maximumSize))
        #expect(PolicyFile.validate(path: directory.file("limit.toml")).isEmpty)
    }

    @Test func errorDescriptions() {
        #expect(ConfigError(file: "a.toml", line: 7, column: 3, message: "bad").description == "a.toml:7: bad")
        #expect(ConfigError(file: "a.toml", message: "gone").description == "a.toml: gone")
    }

    // MARK: Fuzz

    static let valid = """
        # A web server.
        mode = "merge"
        trust_group = "web"
        max_pages = 4096
        max_pause_ms = 25
        max_pause_ms_per_minute = 1000
        reclaim_hugetlbfs = false
        """

    /// Every input either parses or is rejected with errors naming the file, each with a line
    /// unless it concerns the whole file; parse and validate agree.
    func check(_ bytes: [UInt8], seed: UInt64) {
        let name = "fuzz-\(seed).toml"
        traceFuzzInput(bytes, label: "policy")
        let result = Result { () throws(ConfigError) in try PolicyFile.parse(bytes: bytes, file: name) }
        switch result {
        case .success:
            break
        case .failure(let error):
            #expect(error.description.hasPrefix(name + ":"), "seed \(seed)")
            #expect(error.line != nil || isWholeFileError(error.message), "seed \(seed): \(error)")
            if let line = error.line {
                #expect((1...lineCount(bytes)).contains(line), "seed \(seed): \(error)")
            }
        }
        if let text = String(validating: bytes, as: UTF8.self) {
            let errors = PolicyFile.validate(text: text, file: name)
            #expect(errors.isEmpty == ((try? result.get()) != nil), "seed \(seed)")
            if case .failure(let error) = result {
                #expect(errors.first == error, "seed \(seed)")
            }
            for error in errors {
                #expect(error.file == name)
                #expect(error.line != nil || isWholeFileError(error.message), "seed \(seed): \(error)")
            }
        }
    }

    @Test func randomBytes() {
        for seed in UInt64(0)..<fuzzIterations {
            var rng = SplitMix64(seed: seed)
            check(randomInput(using: &rng), seed: seed)
        }
    }

    @Test func mutationsOfAValidFile() {
        var parsed = 0
        for seed in UInt64(0)..<fuzzIterations {
            var rng = SplitMix64(seed: seed &+ 1_000_000)
            let bytes = mutate(Self.valid, using: &rng)
            check(bytes, seed: seed)
            if (try? PolicyFile.parse(bytes: bytes, file: "x")) != nil { parsed += 1 }
        }
        // The mutations are mild enough that some still parse, so both paths are exercised.
        #expect(parsed > 10)
    }
}

import Testing
@testable import SamepageConfig

/// Inputs on which toml++ 3.4.0 (inside TOMLKit 0.6.0) asserts in a debug build and has
/// undefined behaviour in a release build. Each must come back as a clean syntax error.
@Suite struct ParserHazardTests {
    @Test(arguments: [
        // parse_key(): a table header whose name does not start like a key.
        ("[=]", 1, "expected a table name after '[', saw '='"),
        ("mode = \"off\"\n[[ #x]]", 2, "expected a table name after '[', saw '#'"),
        // parse_value(): an array element that starts with '}'.
        ("x = [}]", 1, "expected a value, saw '}'"),
        ("\nx = [1,\n  }]", 3, "expected a value, saw '}'"),
        // parse_value() scan: a date, a space, a digit, then the end of the value.
        ("x = 1979-05-27 0\n", 1, "1979-05-27 0 is not a valid value"),
        ("x = [1979-05-27 0]", 1, "1979-05-27 0 is not a valid value"),
        // parse_time(): a date-time whose time does not start with a digit.
        ("x = 1979-05-27T[[07:32:00Z false", 1, "1979-05-27T[[07:32:00Z is not a valid value"),
        ("x = 1979-05-27tZ", 1, "1979-05-27tZ is not a valid value"),
    ])
    func rejectedBeforeTheParserSeesThem(text: String, line: Int, message: String) {
        let errors = PolicyFile.validate(text: text, file: "p.toml")
        #expect(errors.map(\.line) == [line])
        #expect(errors.first?.message == "syntax error: " + message)
    }

    @Test func unquotedWordsGetAHint() {
        let errors = PolicyFile.validate(text: "# web\nmode = merge\n", file: "p.toml")
        #expect(errors.map(\.description) == [
            "p.toml:2: syntax error: merge is not a value: a string needs quotes, as in \"merge\""
        ])
    }

    /// Every form of unquoted value TOML 1.0 allows still reaches the parser.
    @Test func everyValidScalarIsAccepted() {
        let text = """
            values = [true, false, 0, -0, +17, 1_000, 0xDEAD_beef, 0o755, 0b1101, 3.14, -0.01, 5e+22, 1e06,
              -2E-2, 6.626e-34, 224_617.445_991, inf, +inf, -inf, nan, +nan, -nan,
              1979-05-27T07:32:00Z, 1979-05-27T00:32:00-07:00, 1979-05-27T00:32:00.999999+07:00,
              1979-05-27 07:32:00Z, 1979-05-27T07:32:00, 1979-05-27T00:32:00.999999, 1979-05-27,
              07:32:00, 00:32:00.999999, 1979-05-27t07:32:00z, 1979-05-27 07:32:00,1979-05-27 07:32:00 ]
            spaced = 1979-05-27 07:32:00 # a comment
            """
        let errors = PolicyFile.validate(text: text, file: "p.toml")
        #expect(errors.map(\.line) == [1, 6])
        #expect(errors.allSatisfy { $0.message.hasPrefix("unknown key") })
    }

    @Test func scalarGrammar() {
        let valid = [
            "true", "false", "0", "-0", "+0", "7", "-17", "1_000", "0xdead_BEEF", "0o7_7", "0b1_0", "0.0", "-3.14",
            "1e5", "1E-5", "1.5e+3", "1_0.0_1e1_0", "inf", "-nan", "1979-05-27", "07:32:00", "07:32:00.5",
            "1979-05-27T07:32:00", "1979-05-27 07:32:00.123Z", "1979-05-27T07:32:00-07:00",
        ]
        for text in valid {
            #expect(ScalarSyntax.isValid(Array(text.utf8)), "\(text)")
        }
        let invalid = [
            "", "1.", ".5", "01", "1__0", "_1", "1_", "0x", "+0x1", "0X1", "1e", "1e+", "--1", "1979-05-27T",
            "07:32", "infinity", "True", "1979-5-27", "1979-05-27T07:32:00+7:00", "1979-05-27T07:32:00Zx",
            "07:32:00.", "0b2", "0o8", "0xg", "1.e5", "1e5.0", "- 1", "tru", "1979-05-27_07:32:00",
        ]
        for text in invalid {
            #expect(!ScalarSyntax.isValid(Array(text.utf8)), "\(text)")
        }
    }
}

import Foundation
import QMP
import Testing

/// The JSON value type: the strict parser against hand-written text and expected values, the
/// serializer against Foundation's `JSONSerialization` reading its output back.
@Suite("QMP JSON values") struct QMPValueTests {
    @Test("objects, arrays, strings, numbers, literals and white space parse to their values")
    func parsesValues() throws {
        let value = try QMPValue(parsing: #" {"a": [1, -2, 0, 3.5, -0.25e2, 1E3, true, false, null], "b": {"c": "d"}, "e": ""}"# + "\r\n")
        #expect(value == .object([
            "a": .array([.int(1), .int(-2), .int(0), .double(3.5), .double(-25), .double(1000), .bool(true), .bool(false), .null]),
            "b": .object(["c": .string("d")]),
            "e": .string(""),
        ]))
        #expect(try QMPValue(parsing: "[]") == .array([]))
        #expect(try QMPValue(parsing: "{}") == .object([:]))
        #expect(try QMPValue(parsing: Array("42".utf8)) == .int(42))
    }

    @Test("integers stay exact: Int64 as int, above Int64.max as uint, beyond UInt64 as double")
    func integers() throws {
        #expect(try QMPValue(parsing: "9223372036854775807") == .int(.max))
        #expect(try QMPValue(parsing: "-9223372036854775808") == .int(.min))
        #expect(try QMPValue(parsing: "9223372036854775808") == .uint(9_223_372_036_854_775_808))
        #expect(try QMPValue(parsing: "18446744073709551615") == .uint(.max))
        #expect(try QMPValue(parsing: "18446744073709551616") == .double(0x1p64))
        #expect(try QMPValue(parsing: "-9223372036854775809") == .double(-0x1p63))
        #expect(QMPValue.uint(.max).uint64Value == .max)
        #expect(QMPValue.int(-1).uint64Value == nil)
        #expect(QMPValue.int(7).doubleValue == 7)
    }

    @Test("escapes decode, surrogate pairs included, as QEMU writes non-ASCII text")
    func escapes() throws {
        #expect(try QMPValue(parsing: #""caf\u00E9 \ud83d\ude00 \"q\" \\ \/ \b\f\n\r\t""#) == .string("café 😀 \"q\" \\ / \u{8}\u{c}\n\r\t"))
        #expect(try QMPValue(parsing: #""plain é UTF-8""#) == .string("plain é UTF-8"))
    }

    @Test("text that is not strict JSON is rejected, with where and why", arguments: [
        ("", "unexpected end of text, expected a value"),
        ("[1,]", "unexpected ']', expected a value"),
        ("{\"a\": 1,}", "unexpected '}', expected an object key"),
        ("01", "leading zero in a number"),
        ("1.", "expected a digit after '.'"),
        ("1e", "expected a digit in the exponent"),
        ("-", "expected a digit"),
        ("+1", "unexpected '+', expected a value"),
        ("tru", "unexpected 't', expected a value"),
        ("\"a\tb\"", "control character byte 0x9 in a string"),
        ("\"abc", "unterminated string"),
        ("\"\\x\"", "invalid escape \\x"),
        ("\"\\u12zz\"", "invalid \\u escape"),
        ("\"\\u12\"", "short \\u escape"),
        ("\"\\ud83d\"", "unpaired surrogate escape"),
        ("\"\\ude00\"", "unpaired surrogate escape"),
        ("{\"a\": 1, \"a\": 2}", "member \"a\" given twice"),
        ("{\"a\" 1}", "expected ':' after an object key"),
        ("[1] [2]", "unexpected '[' after the value"),
        ("{'a': 1}", "unexpected ''', expected an object key"),
        ("1e999", "number 1e999 is out of range"),
    ])
    func rejects(_ text: String, reason: String) {
        let error = #expect(throws: QMPValue.ParseError.self) { try QMPValue(parsing: text) }
        #expect(error?.reason == reason)
    }

    @Test("invalid UTF-8 in a string is rejected")
    func invalidUTF8() {
        let bytes: [UInt8] = [UInt8(ascii: "\""), 0xC3, 0x28, UInt8(ascii: "\"")]
        let error = #expect(throws: QMPValue.ParseError.self) { try QMPValue(parsing: bytes) }
        #expect(error?.reason == "invalid UTF-8 in a string")
        #expect(error?.offset == 1)
    }

    @Test("nesting deeper than the limit is rejected; at the limit it parses")
    func nesting() throws {
        let limit = QMPValue.maximumNesting
        let deepest = String(repeating: "[", count: limit) + String(repeating: "]", count: limit)
        #expect(try QMPValue(parsing: deepest).arrayValue?.count == 1)
        let tooDeep = String(repeating: "[", count: limit + 1) + String(repeating: "]", count: limit + 1)
        let error = #expect(throws: QMPValue.ParseError.self) { try QMPValue(parsing: tooDeep) }
        #expect(error?.offset == limit)
    }

    @Test("serialized text is JSON that Foundation reads back to the same values")
    func serializesForAnotherParser() throws {
        let text = "quote \" backslash \\ newline \n tab \t bell \u{7} del \u{7F} é 😀 </script>"
        let value: QMPValue = [
            "execute": "qom-set",
            "arguments": ["path": .string(text), "property": "merge", "value": false],
            "id": 7,
            "list": [1, -2.5, nil, true, .uint(.max)],
        ]
        let bytes = value.serialized()
        let object = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        let arguments = try #require(object["arguments"] as? [String: Any])
        #expect(arguments["path"] as? String == text)
        #expect(arguments["value"] as? Bool == false)
        #expect((object["id"] as? NSNumber)?.intValue == 7)
        let list = try #require(object["list"] as? [Any])
        #expect((list[1] as? NSNumber)?.doubleValue == -2.5)
        #expect(list[2] is NSNull)
        // And it reads back through this parser as the value it came from.
        #expect(try QMPValue(parsing: bytes) == value)
    }

    @Test("serialization is compact, keys sorted, control characters escaped")
    func serializedForm() {
        let value: QMPValue = ["b": [1, "x\u{1}\n"], "a": .double(0.5), "c": .double(.nan)]
        #expect(value.description == #"{"a":0.5,"b":[1,"x\u0001\n"],"c":null}"#)
    }
}

extension QMPValue {
    /// The value as compact JSON text in UTF-8, members in sorted key order.
    ///
    /// Strings are escaped as RFC 8259 requires: `"` and `\` by a backslash, control
    /// characters (and DEL) as `\n`, `\t`, … or `\u00XX`; everything else is written as its
    /// UTF-8, which QEMU reads. A `double` that is not finite has no JSON form and is written
    /// as `null`.
    ///
    /// - Complexity: O(n) in the size of the text, plus sorting each object's keys.
    public func serialized() -> [UInt8] {
        var bytes: [UInt8] = []
        serialize(into: &bytes)
        return bytes
    }

    /// Appends ``serialized()`` to `bytes`.
    public func serialize(into bytes: inout [UInt8]) {
        switch self {
        case .object(let members):
            bytes.append(UInt8(ascii: "{"))
            for (position, key) in members.keys.sorted().enumerated() {
                if position > 0 { bytes.append(UInt8(ascii: ",")) }
                Self.serializeString(key, into: &bytes)
                bytes.append(UInt8(ascii: ":"))
                members[key]!.serialize(into: &bytes)
            }
            bytes.append(UInt8(ascii: "}"))
        case .array(let elements):
            bytes.append(UInt8(ascii: "["))
            for (position, element) in elements.enumerated() {
                if position > 0 { bytes.append(UInt8(ascii: ",")) }
                element.serialize(into: &bytes)
            }
            bytes.append(UInt8(ascii: "]"))
        case .string(let text):
            Self.serializeString(text, into: &bytes)
        case .int(let value):
            bytes.append(contentsOf: String(value).utf8)
        case .uint(let value):
            bytes.append(contentsOf: String(value).utf8)
        case .double(let value):
            // Swift writes a finite Double as JSON does ("0.1", "1e-05", "5e+20", "-0.0").
            bytes.append(contentsOf: (value.isFinite ? value.description : "null").utf8)
        case .bool(let value):
            bytes.append(contentsOf: (value ? "true" : "false").utf8)
        case .null:
            bytes.append(contentsOf: "null".utf8)
        }
    }

    private static let hexDigits = Array("0123456789ABCDEF".utf8)

    private static func serializeString(_ text: String, into bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0x08: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
            case 0x0C: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
            case 0x00..<0x20, 0x7F:
                bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                bytes.append(hexDigits[Int(byte >> 4)])
                bytes.append(hexDigits[Int(byte & 0x0F)])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}

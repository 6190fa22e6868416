/// A TCP endpoint written `HOST:PORT`, with an IPv6 host in brackets: `[::1]:10460`.
public struct HostAndPort: Sendable, Hashable, CustomStringConvertible {
    /// A host name or address, without brackets.
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT` or `[IPV6]:PORT`; nil if malformed or the port is not 1 to 65535.
    public init?(_ text: String) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
            // An IPv6 address, perhaps with a zone: fe80::1%eth0.
            guard !host.isEmpty, host.contains(":"), host.unicodeScalars.allSatisfy({ scalar in
                switch scalar {
                case "a"..."z", "A"..."Z", "0"..."9", ":", ".", "%", "_", "-": return true
                default: return false
                }
            }) else { return nil }
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            guard !host.isEmpty, host.unicodeScalars.allSatisfy({ scalar in
                switch scalar {
                case "a"..."z", "A"..."Z", "0"..."9", ".", "-": return true
                default: return false
                }
            }) else { return nil }
        }
        guard !portText.isEmpty, portText.count <= 5, portText.unicodeScalars.allSatisfy({ ("0"..."9").contains($0) }),
            let port = UInt16(portText), port > 0
        else { return nil }
        self.host = String(host)
        self.port = port
    }

    /// `HOST:PORT`, with brackets around an IPv6 address.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

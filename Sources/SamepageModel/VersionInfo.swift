/// Versions (`version`): the control protocol's and the daemon's.
///
/// On the wire: `{"protocol": 1, "daemon": "0.1"}` (its synthesized `Codable` form).
public struct VersionInfo: Sendable, Equatable, Codable {
    /// The protocol version the daemon speaks.
    public var protocolVersion: Int
    /// The daemon's release, `x.y` or `x.y.z`.
    public var daemon: String

    public enum CodingKeys: String, CodingKey {
        case protocolVersion = "protocol"
        case daemon
    }

    public init(protocolVersion: Int, daemon: String) {
        self.protocolVersion = protocolVersion
        self.daemon = daemon
    }
}

/// QEMU's greeting to a new monitor client: `{"QMP": {"version": {"qemu": {"major": 8,
/// "minor": 1, "micro": 5}, "package": "pve-qemu-kvm_8.1.5-6"}, "capabilities": ["oob"]}}`.
///
/// The only message QEMU sends before capabilities negotiation; that it came at all is how a
/// client knows it holds the monitor (``QMPError/busy(path:timeout:)``).
public struct QMPGreeting: Sendable, Hashable {
    /// QEMU's version.
    public var version: QMPVersion
    /// The capabilities QEMU offers (`oob`, for out-of-band commands). This client enables none.
    public var capabilities: [String]

    public init(version: QMPVersion, capabilities: [String]) {
        self.version = version
        self.capabilities = capabilities
    }

    init(message: QMPValue) throws(QMPReplyError) {
        guard message["QMP"] != nil else { throw QMPReplyError("the first message is not a QMP greeting: \(message)") }
        let qmp = try QMPReplyReader(message, "the greeting").object("QMP", "the greeting's QMP member")
        let version = try qmp.object("version", "the greeting's version")
        let qemu = try version.object("qemu", "the greeting's QEMU version")
        self.version = QMPVersion(
            major: Int(try qemu.int("major")), minor: Int(try qemu.int("minor")), micro: Int(try qemu.int("micro")),
            package: try version.optionalString("package") ?? "")
        capabilities = try qmp.array("capabilities").compactMap(\.stringValue)
    }
}

/// A QEMU version, `major.minor.micro`, with the distribution's package string.
public struct QMPVersion: Sendable, Hashable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public var micro: Int
    /// The build's package string: `pve-qemu-kvm_8.1.5-6` on Proxmox VE,
    /// `Debian 1:7.2+dfsg-7+deb12u6` on Debian, empty for a plain build.
    public var package: String

    public init(major: Int, minor: Int, micro: Int, package: String = "") {
        self.major = major
        self.minor = minor
        self.micro = micro
        self.package = package
    }

    /// Whether this is `major.minor.micro` or later (the package string aside).
    public func isAtLeast(_ major: Int, _ minor: Int, _ micro: Int = 0) -> Bool {
        (self.major, self.minor, self.micro) >= (major, minor, micro)
    }

    /// `8.1.5`, with ` (PACKAGE)` when there is one.
    public var description: String {
        "\(major).\(minor).\(micro)" + (package.isEmpty ? "" : " (\(package))")
    }
}

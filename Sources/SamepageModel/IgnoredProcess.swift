import Glibc

/// A process that looks like a QEMU (its binary is named `kvm`, `qemu-system-*`, …) but that
/// samepaged does not trust as a hypervisor, and why: it is never contacted, listed as a guest
/// or read. `list` shows these after the guests, and `dominfo` of a name only such a process
/// claims says so.
///
/// Every text here but ``reason`` comes from a process samepaged does not trust (its binary's
/// path, the name on its command line): ``init(pid:uid:executable:reason:claimedName:claimedUUID:)``
/// replaces control characters and cuts long ones, so that printing them cannot drive a
/// terminal.
public struct IgnoredProcess: Sendable, Equatable, Codable {
    /// Its process id.
    public var pid: Int32
    /// The uid it runs as; nil when it could not be read.
    public var uid: UInt32?
    /// Its binary (`/proc/PID/exe`).
    public var executable: String
    /// Why it is ignored, in samepaged's words.
    public var reason: String
    /// The guest name its command line claims (`-name`), never believed; nil without one.
    public var claimedName: String?
    /// The UUID its command line claims, never believed; nil without one.
    public var claimedUUID: String?

    /// The longest text taken from the process itself.
    public static let maximumTextLength = 120

    /// A report; text from the process itself is made printable and cut here.
    public init(pid: Int32, uid: UInt32?, executable: String, reason: String, claimedName: String? = nil, claimedUUID: String? = nil) {
        self.pid = pid
        self.uid = uid
        self.executable = Self.printable(executable)
        self.reason = Self.printable(reason, limit: 4 * Self.maximumTextLength)
        self.claimedName = claimedName.map { Self.printable($0) }
        self.claimedUUID = claimedUUID.map { Self.printable($0) }
    }

    enum CodingKeys: String, CodingKey {
        case pid, uid, executable, reason
        case claimedName = "claimed_name"
        case claimedUUID = "claimed_uuid"
    }

    /// Reads the wire form, making its text printable as ``init(pid:uid:executable:reason:claimedName:claimedUUID:)`` does.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            pid: try c.decode(Int32.self, forKey: .pid), uid: try c.decodeIfPresent(UInt32.self, forKey: .uid),
            executable: try c.decode(String.self, forKey: .executable), reason: try c.decode(String.self, forKey: .reason),
            claimedName: try c.decodeIfPresent(String.self, forKey: .claimedName),
            claimedUUID: try c.decodeIfPresent(String.self, forKey: .claimedUUID))
    }

    /// One line for `list`: `pid 1234 (uid 65534, /dev/shm/kvm): its executable … not root`.
    public var summary: String {
        let who = [uid.map { "uid \($0)" } ?? "uid unknown", executable]
        let claims = claimedName.map { ", claims the name \($0)" } ?? ""
        return "pid \(pid) (\(who.joined(separator: ", "))\(claims)): \(reason)"
    }

    /// Whether it claims to be the guest `nameOrUUID`.
    public func claims(_ nameOrUUID: String) -> Bool {
        claimedName == nameOrUUID || (claimedUUID != nil && claimedUUID == nameOrUUID.lowercased())
    }

    /// The trailing section of `list`: a blank line, then `ignored: SUMMARY` for each; empty
    /// without any.
    public static func listSection(_ processes: [IgnoredProcess]) -> [String] {
        processes.isEmpty ? [] : [""] + processes.map { "ignored: \($0.summary)" }
    }

    /// Why `dominfo NAME` found no guest, when the only processes claiming `NAME` are ignored
    /// ones: one sentence naming each; nil when none claims it.
    public static func onlyClaimedBy(_ nameOrUUID: String, in processes: [IgnoredProcess]) -> String? {
        let claimants = processes.filter { $0.claims(nameOrUUID) }
        guard !claimants.isEmpty else { return nil }
        let who = claimants.map { "pid \($0.pid) (\($0.uid.map { "uid \($0)" } ?? "uid unknown"), \($0.executable)): \($0.reason)" }
        return "no guest named \(IgnoredProcess.printable(nameOrUUID)); only a process samepaged ignores claims it: "
            + who.joined(separator: "; ")
    }

    /// `text` with every control character (C0, DEL, C1) as `?`, cut to `limit` characters
    /// (marked with `…`).
    static func printable(_ text: String, limit: Int = maximumTextLength) -> String {
        var scalars = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            let value = scalar.value
            scalars.append(value < 0x20 || (0x7f...0x9f).contains(value) ? "?" : scalar)
        }
        let clean = String(scalars)
        return clean.count > limit ? String(clean.prefix(limit - 1)) + "…" : clean
    }
}

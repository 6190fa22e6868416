import Glibc

/// What a peer of the control socket may do.
public enum ControlRole: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Reads only: `list`, `dominfo`, `stats`, `policy.show`, `sharing`, `version`.
    case read
    /// Reads and changes: also `run`, `tune`, `ksm.tune` and `policy.reload`.
    case admin

    public var description: String {
        switch self {
        case .read: "read"
        case .admin: "admin"
        }
    }
}

extension ControlCommand {
    /// Whether the command changes what samepaged does (run mode, knobs, ksmd, policies),
    /// and so needs ``ControlRole/admin``.
    public var needsAdmin: Bool {
        switch self {
        case .run, .tune, .ksmTune, .policyReload: true
        case .list, .dominfo, .stats, .policyShow, .sharing, .version, .advise: false
        }
    }
}

/// Who may use the control socket, and for what, decided per peer from the kernel's
/// credentials of the connection (`SO_PEERCRED`, and the peer's groups from
/// `SO_PEERGROUPS` or its `/proc/PID/status`), never from anything the peer sends.
///
/// - root (uid 0) and the daemon's own uid are always ``ControlRole/admin``;
/// - a member (primary or supplementary) of ``adminGroup`` is ``ControlRole/admin``;
/// - a member of ``readGroup`` is ``ControlRole/read``;
/// - anyone else has no access: one `permission_denied` response, and the connection closes.
///
/// A read-only peer that sends a request that ``ControlCommand/needsAdmin`` gets a
/// `permission_denied` response naming the admin group, and the connection stays open.
public struct ControlAccess: Sendable, Equatable {
    /// Members may read (`control.group`); nil for none.
    public var readGroup: gid_t?
    /// Members may read and change (`control.admin_group`); nil for root only.
    public var adminGroup: gid_t?
    /// The daemon's own uid (an unprivileged daemon in tests): always admin.
    public var ownUID: uid_t

    public init(readGroup: gid_t? = nil, adminGroup: gid_t? = nil, ownUID: uid_t = geteuid()) {
        self.readGroup = readGroup
        self.adminGroup = adminGroup
        self.ownUID = ownUID
    }

    /// The group the socket file is given: the read group, else the admin group (whose members
    /// must reach the file too), else none.
    public var socketGroup: gid_t? { readGroup ?? adminGroup }

    /// The role of a peer running as `uid` with primary group `gid`; `groups` gives its
    /// supplementary groups, asked only when the primary one decides nothing. Nil: no access.
    public func role(uid: uid_t, gid: gid_t, groups: () -> [gid_t]) -> ControlRole? {
        if uid == 0 || uid == ownUID { return .admin }
        if readGroup == nil && adminGroup == nil { return nil }
        if let adminGroup, gid == adminGroup { return .admin }
        let supplementary = groups()
        if let adminGroup, supplementary.contains(adminGroup) { return .admin }
        if let readGroup, gid == readGroup || supplementary.contains(readGroup) { return .read }
        return nil
    }

    /// The refusal of `command` to a peer of `role`; nil when it may.
    public func refusal(of command: ControlCommand, to role: ControlRole, uid: uid_t) -> ControlFailure? {
        guard command.needsAdmin, role != .admin else { return nil }
        let needed = adminGroup.map { "the admin group \(groupName($0)) (control.admin_group)" }
            ?? "root (no control.admin_group is configured)"
        return ControlFailure(
            .permissionDenied, "`\(command.rawValue)` needs \(needed); uid \(uid) may only read")
    }

    /// The refusal of a peer with no role at all.
    public func denial(uid: uid_t) -> ControlFailure {
        var allowed = ["root"]
        if let readGroup { allowed.append("members of group \(groupName(readGroup)) (to read)") }
        if let adminGroup { allowed.append("members of group \(groupName(adminGroup)) (to read and change)") }
        return ControlFailure(
            .permissionDenied,
            "uid \(uid) may not use samepaged's control socket: it is for \(allowed.joined(separator: " and ")) only")
    }
}

/// `name (gid N)`, or `gid N` for a group without a name.
func groupName(_ gid: gid_t) -> String {
    var group = Glibc.group()
    var result: UnsafeMutablePointer<Glibc.group>?
    var buffer = [CChar](repeating: 0, count: 4096)
    let status = getgrgid_r(gid, &group, &buffer, buffer.count, &result)
    guard status == 0, result != nil, let name = group.gr_name else { return "gid \(gid)" }
    return "\(String(cString: name)) (gid \(gid))"
}

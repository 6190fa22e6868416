import Glibc

/// Which processes are QEMUs: those whose binary (`/proc/PID/exe`) has a file name that
/// matches one of these shell patterns (`fnmatch(3)`, `*` and `?` and `[…]`).
///
/// The default is `qemu-system-*` (upstream's name, any target), `qemu-kvm` (RHEL's and
/// Fedora's) and `kvm` (Proxmox VE's `/usr/bin/kvm`; where it is a link, `exe` already names
/// the file it resolves to). The name of the binary, not `argv[0]` nor `comm`, decides:
/// those are whatever the starter chose (`-name process=…` sets `comm`).
///
/// When a QEMU package is upgraded under a running guest, the binary QEMU runs is unlinked
/// and `exe` reads `/usr/bin/qemu-system-x86_64 (deleted)`: still a QEMU, matched without
/// that suffix (``executable(linkTarget:)``).
public struct QEMUExecutableNames: Sendable, Hashable {
    public var patterns: [String]

    public init(patterns: [String]) {
        self.patterns = patterns
    }

    public static let `default` = QEMUExecutableNames(patterns: ["qemu-system-*", "qemu-kvm", "kvm"])

    /// Whether an `exe` link target names a QEMU binary.
    public func matches(linkTarget: String) -> Bool {
        let path = Self.executable(linkTarget: linkTarget).path
        let name = path.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? path
        return patterns.contains { fnmatch($0, name, 0) == 0 }
    }

    /// An `exe` link target without the ` (deleted)` the kernel appends once the file is
    /// unlinked, and whether it had it.
    public static func executable(linkTarget: String) -> (path: String, deleted: Bool) {
        let suffix = " (deleted)"
        guard linkTarget.hasSuffix(suffix) else { return (linkTarget, false) }
        return (String(linkTarget.dropLast(suffix.count)), true)
    }
}

import Glibc
import LinuxSystem

/// Whether a process that looks like a QEMU may be taken for a guest's hypervisor, decided
/// from what the kernel says about it, never from what the process says about itself.
///
/// samepaged is root and pauses, reads and punches what a guest's QEMU names. Anyone can run
/// a program called `kvm` with `-name db1` and a QMP socket of their choosing, so a QEMU is
/// trusted only when:
/// - it runs as a hypervisor user (root, or the users the configuration names, such as
///   Debian libvirt's `libvirt-qemu`): every one of its real, effective, saved and filesystem
///   uids is one of them (`/proc/PID/status`);
/// - its executable (the inode `/proc/PID/exe` points at, even if unlinked) is a regular file
///   owned by root and writable by no one else;
/// - every directory on the executable's path is owned by root and writable by no one else,
///   so no other user could have put that file there or swapped it.
public struct ProcessTrust: Sendable, Equatable {
    /// The uids a hypervisor may run as.
    public var allowedUIDs: Set<uid_t>

    public init(allowedUIDs: Set<uid_t>) { self.allowedUIDs = allowedUIDs }

    /// The trust of the named users (root always among them), and the names that are no user
    /// of this host (ignored; the caller says so).
    public static func users(_ names: [String]) -> (trust: ProcessTrust, unknown: [String]) {
        var uids: Set<uid_t> = [0]
        var unknown: [String] = []
        for name in names {
            if let entry = getpwnam(name) { uids.insert(entry.pointee.pw_uid) } else { unknown.append(name) }
        }
        return (ProcessTrust(allowedUIDs: uids), unknown)
    }

    /// What the kernel says about a process and its executable.
    public struct Facts: Sendable, Equatable {
        /// Real, effective, saved and filesystem uids.
        public var uids: [uid_t]
        /// Owner and mode of the executable's inode.
        public var executableOwner: uid_t
        public var executableMode: mode_t
        /// Each directory on the executable's path, from `/` down, with owner and mode.
        public var directories: [(path: String, owner: uid_t, mode: mode_t)]

        public init(uids: [uid_t], executableOwner: uid_t, executableMode: mode_t, directories: [(path: String, owner: uid_t, mode: mode_t)]) {
            self.uids = uids
            self.executableOwner = executableOwner
            self.executableMode = executableMode
            self.directories = directories
        }

        public static func == (a: Facts, b: Facts) -> Bool {
            a.uids == b.uids && a.executableOwner == b.executableOwner && a.executableMode == b.executableMode
                && a.directories.map(\.path) == b.directories.map(\.path) && a.directories.map(\.owner) == b.directories.map(\.owner)
                && a.directories.map(\.mode) == b.directories.map(\.mode)
        }
    }

    /// Why a process with these facts is not a trusted hypervisor; nil when it is.
    public func untrustedReason(_ facts: Facts, executable: String) -> String? {
        if let uid = facts.uids.first(where: { !allowedUIDs.contains($0) }) {
            return "it runs as uid \(uid), not root or a configured hypervisor user (qemu.hypervisor_users)"
        }
        if facts.executableMode & S_IFMT != S_IFREG { return "its executable \(executable) is not a regular file" }
        if facts.executableOwner != 0 { return "its executable \(executable) is owned by uid \(facts.executableOwner), not root" }
        if facts.executableMode & 0o022 != 0 {
            return "its executable \(executable) is writable by others (mode \(String(facts.executableMode & 0o7777, radix: 8)))"
        }
        for directory in facts.directories {
            if directory.owner != 0 { return "\(directory.path), on its executable's path, is owned by uid \(directory.owner), not root" }
            if directory.mode & 0o022 != 0 {
                return "\(directory.path), on its executable's path, is writable by others (mode \(String(directory.mode & 0o7777, radix: 8)))"
            }
        }
        return nil
    }

    /// Reads the facts of `pid` from the kernel: its uids from `status`, its executable's
    /// inode through `exe` (which reaches it even when unlinked), and the directories of the
    /// path `exe` names.
    public static func facts(pid: pid_t, procRoot: String = "/proc", executable: String) throws(SystemError) -> Facts {
        let uids = try Self.uids(pid: pid, procRoot: procRoot)
        var binary = stat()
        guard stat("\(procRoot)/\(pid)/exe", &binary) == 0 else { throw SystemError("stat \(procRoot)/\(pid)/exe") }
        var directories: [(path: String, owner: uid_t, mode: mode_t)] = []
        var path = ""
        let components = executable.split(separator: "/").dropLast()
        for component in [""] + components.map(String.init) {
            path = component.isEmpty ? "/" : (path == "/" ? "/" : path + "/") + component
            var directory = stat()
            guard lstat(path, &directory) == 0 else { throw SystemError("lstat \(path)") }
            directories.append((path, directory.st_uid, directory.st_mode))
        }
        return Facts(uids: uids, executableOwner: binary.st_uid, executableMode: binary.st_mode, directories: directories)
    }

    /// The real, effective, saved and filesystem uids of `pid` (the `Uid:` line of its
    /// `status`).
    public static func uids(pid: pid_t, procRoot: String = "/proc") throws(SystemError) -> [uid_t] {
        let status = String(decoding: try readWholeFile("\(procRoot)/\(pid)/status", limit: 64 << 10), as: UTF8.self)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }) else {
            throw SystemError(errno: .ioError, operation: "parse \(procRoot)/\(pid)/status (no Uid line)")
        }
        let uids = line.dropFirst(4).split(whereSeparator: { $0 == "\t" || $0 == " " }).compactMap { uid_t($0) }
        guard uids.count == 4 else { throw SystemError(errno: .ioError, operation: "parse \(procRoot)/\(pid)/status (Uid line)") }
        return uids
    }
}

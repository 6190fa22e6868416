import Foundation
import Glibc
import GuestMemory
import LinuxSystem

/// A QEMU process found in /proc, with what its command line says.
public struct DiscoveredQEMU: Sendable, Hashable {
    public var pid: pid_t
    /// `starttime` of `/proc/PID/stat` (clock ticks after boot): with the pid, the process.
    public var startTime: UInt64
    /// The binary it runs (`/proc/PID/exe`), without the kernel's ` (deleted)`.
    public var executable: String
    /// The binary was unlinked since QEMU started (a package upgrade): a restart of the
    /// guest runs a newer QEMU.
    public var executableDeleted: Bool
    public var commandLine: QEMUGuestCommandLine
    /// Why libvirt manages it (then it is found through libvirt, not here), or nil.
    public var managedByLibvirt: LibvirtOwnership?
    /// The uid it runs as (effective, from its `status`): who may own its QMP socket
    /// (``QMPSocketTrust``).
    public var uid: uid_t

    public init(pid: pid_t, startTime: UInt64, executable: String, executableDeleted: Bool = false,
                commandLine: QEMUGuestCommandLine, managedByLibvirt: LibvirtOwnership? = nil, uid: uid_t = 0) {
        self.pid = pid
        self.uid = uid
        self.startTime = startTime
        self.executable = executable
        self.executableDeleted = executableDeleted
        self.commandLine = commandLine
        self.managedByLibvirt = managedByLibvirt
    }
}

/// A process named like a QEMU that the kernel's facts do not make a hypervisor
/// (``ProcessTrust``): never contacted, listed as a guest or read, only reported, with why.
public struct UntrustedQEMU: Sendable, Hashable {
    /// Its process id.
    public var pid: pid_t
    /// The uid it runs as (effective); nil when its `status` could not be read.
    public var uid: uid_t?
    /// Its binary, as `/proc/PID/exe` names it.
    public var executable: String
    /// Why it is not trusted.
    public var reason: String
    /// The guest name its command line claims (`-name`), read for the report only (so that
    /// `dominfo NAME` can say who claims it); nil without one.
    public var claimedName: String?
    /// The UUID its command line claims (`-uuid`), likewise.
    public var claimedUUID: String?

    /// A report of an untrusted process.
    public init(pid: pid_t, uid: uid_t?, executable: String, reason: String, claimedName: String? = nil, claimedUUID: String? = nil) {
        self.pid = pid
        self.uid = uid
        self.executable = executable
        self.reason = reason
        self.claimedName = claimedName
        self.claimedUUID = claimedUUID
    }
}

/// The QEMU processes of the host, found in /proc pass after pass without reading every
/// process's files every time.
///
/// A host runs thousands of processes and a handful of QEMUs. Each pass reads the proc
/// root's directory and every process's `stat` (a ``ProcessTable``, which the mapping index
/// may share), a short line read without any lock of the process, for two fields: the start time and the command name (`comm`). A process whose
/// pid, start time and command name are those of the last pass is the same program as then,
/// and nothing more of it is read. A new process, or one that is not the same, gets one
/// `readlink` of `exe` to learn its binary (``QEMUExecutableNames``); only a QEMU has its
/// `cmdline` and `cgroup` read, then its `stat` again to make sure the arguments are of the
/// process that was looked at. The command name is in the key because `execve` keeps the
/// pid and the start time: a wrapper script that ends in `exec qemu-system-x86_64 …` is the
/// same process before and after, but its `comm` turns from the script's name to QEMU's.
///
/// Processes come and go during a pass. A process whose files vanish while it is read
/// (`ENOENT`, `ESRCH`) has exited and is passed over, and so is one whose `cmdline` is empty
/// (a zombie); one the kernel refuses to show (`EACCES`, `EPERM`) is listed in
/// ``Pass/refused``, and one that cannot be read for another reason in ``Pass/unreadable``.
/// Neither is remembered, so each is tried again at the next pass.
///
/// Which QEMUs are libvirt's (``DiscoveredQEMU/managedByLibvirt``) is decided every pass by
/// ``LibvirtOwnership/owner(pid:arguments:cgroup:libvirtPIDFiles:runDirectory:)``, from the
/// remembered arguments and cgroup and libvirt's pid files read afresh: a pid file written
/// after QEMU was first seen counts from the pass after.
///
/// Not thread-safe: one owner calls ``refresh()``.
public final class QEMUGuestDiscovery {
    /// What one pass read.
    public struct Pass: Sendable {
        /// Processes whose `stat` was read.
        public var processes = 0
        /// `exe` links read (new or changed processes).
        public var executablesRead = 0
        /// `cmdline` files read (new or changed QEMUs).
        public var commandLinesRead = 0
        /// Processes the kernel refused to show (`EACCES`, `EPERM`).
        public var refused: [pid_t] = []
        /// Processes that could not be read, with the error.
        public var unreadable: [pid_t: SystemError] = [:]
    }

    /// What identifies a process from one pass to the next: its start time and command name
    /// (the pid is the record's key).
    private struct ProcessKey: Hashable {
        var startTime: UInt64
        var command: [UInt8]
    }

    private enum Record {
        /// Not a QEMU (or a kernel thread, which has no `exe`).
        case other(ProcessKey)
        case qemu(ProcessKey, QEMURecord)
        /// Named like a QEMU, but not trusted as a hypervisor (``ProcessTrust``): never read
        /// further, never listed.
        case untrusted(ProcessKey, UntrustedQEMU)
    }

    private struct QEMURecord {
        var linkTarget: String
        var arguments: [String]
        var commandLine: QEMUGuestCommandLine
        var cgroup: String?
        var uid: uid_t
    }

    /// Where proc is mounted; the tables it is refreshed from are of this root.
    public let procRoot: String
    private let libvirtRunDirectory: String
    private let executableNames: QEMUExecutableNames
    private var records: [pid_t: Record] = [:]
    private let proxmoxRunDirectories: [String]
    private let trust: ProcessTrust?
    /// The latest pass's reads.
    public private(set) var lastPass = Pass()
    /// The processes named like a QEMU that are not trusted as one, with the reason, as of the
    /// latest pass: not returned by ``refresh()``.
    public private(set) var untrusted: [pid_t: UntrustedQEMU] = [:]

    /// - Parameters:
    ///   - procRoot: where proc is mounted (a fake tree in tests).
    ///   - libvirtRunDirectory: libvirt's QEMU run directory, with its `NAME.pid` files.
    ///   - executableNames: which binaries are QEMU.
    ///   - proxmoxRunDirectories: where qemu-server keeps pid files and QMP sockets.
    ///   - trust: who may be a hypervisor (``ProcessTrust``); nil trusts every process named
    ///     like a QEMU, for a fake proc tree in tests only.
    public init(procRoot: String = "/proc", libvirtRunDirectory: String = "/run/libvirt/qemu",
                executableNames: QEMUExecutableNames = .default,
                proxmoxRunDirectories: [String] = QEMUGuestCommandLine.defaultProxmoxRunDirectories,
                trust: ProcessTrust?) {
        self.procRoot = procRoot
        self.libvirtRunDirectory = libvirtRunDirectory
        self.executableNames = executableNames
        self.proxmoxRunDirectories = proxmoxRunDirectories
        self.trust = trust
    }

    /// One pass over the processes: the QEMUs running now, by pid, libvirt's among them
    /// (marked), from a ``ProcessTable`` of the proc root taken for it.
    @discardableResult
    public func refresh() -> [DiscoveredQEMU] {
        refresh(from: ProcessTable.read(procRoot: procRoot))
    }

    /// One pass over the processes of `table` (taken of this discovery's proc root, and
    /// shared with whoever else reads the process list): the QEMUs running now, by pid,
    /// libvirt's among them (marked).
    ///
    /// - Complexity: an `exe` `readlink` per new process of the table, and per new QEMU its
    ///   `cmdline`, `cgroup` and `stat`; libvirt's pid files when there is a QEMU.
    @discardableResult
    public func refresh(from table: ProcessTable) -> [DiscoveredQEMU] {
        precondition(table.procRoot == procRoot, "a process table of another proc root")
        var pass = Pass()
        var seen = Set<pid_t>()
        for entry in table.entries {
            let pid = entry.pid
            pass.processes += 1
            guard let key = key(of: entry, into: &pass) else { continue }
            seen.insert(pid)
            switch records[pid] {
            case .other(let old) where old == key, .qemu(let old, _) where old == key, .untrusted(let old, _) where old == key:
                continue
            default:
                records[pid] = inspect(pid, key: key, into: &pass)
            }
        }
        for pid in records.keys where !seen.contains(pid) { records[pid] = nil }
        lastPass = pass

        var found: [DiscoveredQEMU] = []
        var pidFiles: [pid_t: String]?
        untrusted = [:]
        for (pid, record) in records {
            if case .untrusted(_, let why) = record { untrusted[pid] = why }
            guard case .qemu(let key, let qemu) = record else { continue }
            if pidFiles == nil { pidFiles = LibvirtOwnership.readPIDFiles(runDirectory: libvirtRunDirectory) }
            let executable = QEMUExecutableNames.executable(linkTarget: qemu.linkTarget)
            found.append(DiscoveredQEMU(
                pid: pid, startTime: key.startTime, executable: executable.path, executableDeleted: executable.deleted,
                commandLine: qemu.commandLine,
                managedByLibvirt: LibvirtOwnership.owner(
                    pid: pid, arguments: qemu.arguments, cgroup: qemu.cgroup, libvirtPIDFiles: pidFiles ?? [:],
                    runDirectory: libvirtRunDirectory),
                uid: qemu.uid))
        }
        return found.sorted { $0.pid < $1.pid }
    }

    /// The record of a process not seen as it is now: not a QEMU, or a QEMU with its command
    /// line; nil when it could not be read (gone, refused, unreadable: tried again next pass).
    private func inspect(_ pid: pid_t, key: ProcessKey, into pass: inout Pass) -> Record? {
        pass.executablesRead += 1
        let linkTarget: String
        do { linkTarget = try readSymbolicLink("\(procRoot)/\(pid)/exe") } catch {
            // A kernel thread has no exe (ENOENT); a process that exited is dropped at the
            // next pass, when its directory is gone.
            if error.errno == .noSuchFileOrDirectory { return .other(key) }
            note(error, of: pid, in: &pass)
            return nil
        }
        guard executableNames.matches(linkTarget: linkTarget) else { return .other(key) }
        let executable = QEMUExecutableNames.executable(linkTarget: linkTarget).path
        var uid: uid_t?
        if let trust {
            // Before anything of the process's own words is read.
            do {
                let facts = try ProcessTrust.facts(pid: pid, procRoot: procRoot, executable: executable)
                uid = facts.uids[1]
                if let why = trust.untrustedReason(facts, executable: executable) {
                    return .untrusted(key, untrustedRecord(pid, uid: uid, executable: executable, reason: why))
                }
            } catch {
                if error.errno == .noSuchFileOrDirectory || error.errno == .noSuchProcess { return nil }
                uid = try? ProcessTrust.uids(pid: pid, procRoot: procRoot)[1]
                return .untrusted(key, untrustedRecord(
                    pid, uid: uid, executable: executable, reason: "its owner and executable cannot be checked: \(error)"))
            }
        } else {
            uid = try? ProcessTrust.uids(pid: pid, procRoot: procRoot)[1]
        }

        pass.commandLinesRead += 1
        let arguments: [String]
        do { arguments = QEMUCommandLine.arguments(cmdline: try readWholeFile("\(procRoot)/\(pid)/cmdline")) } catch {
            note(error, of: pid, in: &pass)
            return nil
        }
        // A zombie has an empty command line; a process that changed since its stat was read
        // (exited and replaced, or exec'd) is not the one the arguments are of.
        guard !arguments.isEmpty, readKey(pid, into: &pass) == key else { return nil }
        let cgroup = try? readWholeFile("\(procRoot)/\(pid)/cgroup", limit: 64 << 10)
        return .qemu(key, QEMURecord(
            linkTarget: linkTarget, arguments: arguments, commandLine: QEMUGuestCommandLine(arguments: arguments, proxmoxRunDirectories: proxmoxRunDirectories),
            cgroup: cgroup.map { String(decoding: $0, as: UTF8.self) }, uid: uid ?? 0))
    }

    /// The report of an untrusted process: its facts, and the name and UUID its command line
    /// claims (read for the report only, never believed).
    private func untrustedRecord(_ pid: pid_t, uid: uid_t?, executable: String, reason: String) -> UntrustedQEMU {
        let arguments = (try? readWholeFile("\(procRoot)/\(pid)/cmdline", limit: 256 << 10)).map(QEMUCommandLine.arguments(cmdline:)) ?? []
        let claimed = arguments.isEmpty ? nil : QEMUGuestCommandLine(arguments: arguments, proxmoxRunDirectories: proxmoxRunDirectories)
        return UntrustedQEMU(
            pid: pid, uid: uid, executable: executable, reason: reason, claimedName: claimed?.name,
            claimedUUID: claimed?.uuid?.uuidString.lowercased())
    }

    /// The start time and command name of `pid` read afresh from its `stat`; nil when it is
    /// gone or cannot be read (noted in `pass`).
    private func readKey(_ pid: pid_t, into pass: inout Pass) -> ProcessKey? {
        key(of: ProcessTable.Entry(pid: pid, reading: ProcessTable.readStat(pid, procRoot: procRoot)), into: &pass)
    }

    /// The start time and command name of a process of a table; nil when it was gone or
    /// could not be read (noted in `pass`).
    private func key(of entry: ProcessTable.Entry, into pass: inout Pass) -> ProcessKey? {
        switch entry.reading {
        case .read(let stat): return ProcessKey(startTime: stat.startTime, command: stat.command)
        case .gone: return nil
        case .refused: pass.refused.append(entry.pid)
        case .unreadable(let error): pass.unreadable[entry.pid] = error
        }
        return nil
    }

    /// Files of a process that exited vanish (`ENOENT`, `ESRCH`): passed over. The rest is
    /// a refusal or a failure.
    private func note(_ error: SystemError, of pid: pid_t, in pass: inout Pass) {
        if error.errno == .noSuchFileOrDirectory || error.errno == .noSuchProcess { return }
        if ProcessMappingIndex.isRefusal(error) {
            pass.refused.append(pid)
        } else {
            pass.unreadable[pid] = error
        }
    }
}

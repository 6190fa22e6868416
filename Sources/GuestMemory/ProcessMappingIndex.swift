import Glibc
import LinuxSystem

/// Which processes map which shared files, kept up to date without reading every process's
/// `/proc/PID/maps` on every pass.
///
/// Reading `maps` is the only way to learn what a process maps, and it is not cheap: the
/// kernel takes the process's mmap lock and formats a line per area, and a host has thousands
/// of processes. But a new mapping changes what `/proc/PID/stat` reports as the process's
/// virtual size (`vsize`), and a new process shows as a new pid or a new start time; both are
/// read without the mmap lock from a short line. So each pass reads every process's `stat`
/// (a ``ProcessTable``, which QEMU discovery may share) and reads `maps` only for processes that are new or whose virtual size changed, plus a
/// rotating slice of the others (every process's `maps` at least every `fullPassEvery`
/// passes), which bounds how long an exotic change that keeps the size (an area unmapped and
/// a backend of the same size mapped in one step) can go unseen.
///
/// A process whose `stat` or `maps` cannot be read for any reason but its exit or a refusal of
/// permission (out of descriptors or memory, an I/O error) is reported in ``Pass/unreadable``:
/// a caller deciding whether a guest's RAM has other writers must treat it as one (fail closed),
/// never skip it. A process the kernel refuses to show us (`EACCES`/`EPERM`: more privileged
/// than we are, or outside our namespace, such as a container's init seen from inside) is
/// listed in ``Pass/refused`` and skipped: a daemon with the unit's capabilities reads every
/// process on its host, and failing closed on these would stop reclaim on every host that has one.
public final class ProcessMappingIndex {
    /// What one pass did.
    public struct Pass: Sendable {
        /// Processes seen.
        public var processes = 0
        /// `maps` files read (new, changed, or due in the rotation).
        public var mapsRead = 0
        /// Processes that could not be inspected, with the error: treat each as a mapper.
        public var unreadable: [pid_t: SystemError] = [:]
        /// Processes the kernel refused to show (`EACCES`, `EPERM`), skipped.
        public var refused: [pid_t] = []
    }

    private struct Record {
        var startTime: UInt64
        var virtualSize: UInt64
        /// The files of its shared mappings.
        var sharedFiles: Set<FileIdentity>
    }

    /// Where proc is mounted; the tables it is refreshed from are of this root.
    public let procRoot: String
    private let fullPassEvery: Int
    private var records: [pid_t: Record] = [:]
    private var passes = 0
    /// The latest pass's findings.
    public private(set) var lastPass = Pass()

    /// - Parameters:
    ///   - procRoot: where proc is mounted (a fake tree in tests).
    ///   - fullPassEvery: every process's `maps` is read at least once in this many passes.
    public init(procRoot: String = "/proc", fullPassEvery: Int = 12) {
        precondition(fullPassEvery >= 1)
        self.procRoot = procRoot
        self.fullPassEvery = fullPassEvery
    }

    /// One pass over the processes: takes a ``ProcessTable`` of the proc root (each
    /// process's `stat`) and reads `maps` where needed.
    @discardableResult
    public func refresh() -> Pass {
        refresh(from: ProcessTable.read(procRoot: procRoot))
    }

    /// One pass over the processes of `table` (taken of this index's proc root, and shared
    /// with whoever else reads the process list): reads `maps` where needed.
    @discardableResult
    public func refresh(from table: ProcessTable) -> Pass {
        precondition(table.procRoot == procRoot, "a process table of another proc root")
        passes += 1
        var pass = Pass()
        var seen = Set<pid_t>()
        for entry in table.entries {
            let pid = entry.pid
            pass.processes += 1
            seen.insert(pid)
            let status: ProcessTable.Stat
            switch entry.reading {
            case .read(let stat): status = stat
            case .gone:
                seen.remove(pid)  // Exited while we looked.
                continue
            case .refused:
                pass.refused.append(pid)
                continue
            case .unreadable(let error):
                pass.unreadable[pid] = error
                continue
            }
            let old = records[pid]
            let due = Int(UInt32(bitPattern: pid)) % fullPassEvery == passes % fullPassEvery
            if let old, old.startTime == status.startTime, old.virtualSize == status.virtualSize, !due { continue }
            do {
                let files = Self.sharedFiles(inMaps: try readWholeFile("\(procRoot)/\(pid)/maps"))
                pass.mapsRead += 1
                records[pid] = Record(startTime: status.startTime, virtualSize: status.virtualSize, sharedFiles: files)
            } catch where error.errno == .noSuchFileOrDirectory || error.errno == .noSuchProcess {
                seen.remove(pid)
                records[pid] = nil
            } catch where Self.isRefusal(error) {
                pass.refused.append(pid)
                records[pid] = nil
            } catch {
                pass.unreadable[pid] = error
                records[pid] = nil
            }
        }
        for pid in records.keys where !seen.contains(pid) { records[pid] = nil }
        lastPass = pass
        return pass
    }

    /// Whether a failure to read a process's files is the kernel refusing to show it to us
    /// (skipped), rather than a failure that leaves us not knowing (fail closed).
    package static func isRefusal(_ error: SystemError) -> Bool {
        error.errno == .permissionDenied || error.errno == .notPermitted
    }

    /// For each of `files`, the processes that mapped it at the last pass.
    public func processes(mappingAny files: Set<FileIdentity>) -> [FileIdentity: [pid_t]] {
        var result: [FileIdentity: [pid_t]] = [:]
        guard !files.isEmpty else { return result }
        for (pid, record) in records {
            for file in record.sharedFiles where files.contains(file) { result[file, default: []].append(pid) }
        }
        for file in result.keys { result[file]!.sort() }
        return result
    }

    /// The numeric entries of the proc root: the processes (thread group leaders; threads are
    /// not listed), in directory order. One `readdir` pass, nothing opened per process.
    package static func processIDs(procRoot: String) -> [pid_t] {
        guard let directory = opendir(procRoot) else { return [] }
        defer { closedir(directory) }
        var pids: [pid_t] = []
        while let entry = readdir(directory) {
            let pid: pid_t? = withUnsafeBytes(of: entry.pointee.d_name) { name in
                var value: pid_t = 0
                var digits = 0
                for byte in name {
                    if byte == 0 { break }
                    guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"), digits < 10 else { return nil }
                    value = value * 10 + pid_t(byte - UInt8(ascii: "0"))
                    digits += 1
                }
                return digits > 0 ? value : nil
            }
            if let pid { pids.append(pid) }
        }
        return pids
    }

    /// `starttime` (field 22) and `vsize` (field 23) of a `/proc/PID/stat` line. The command
    /// (field 2) is in parentheses and may itself hold spaces and parentheses, so fields are
    /// counted from the last `)`.
    package static func startAndSize(_ stat: [UInt8]) -> (startTime: UInt64, virtualSize: UInt64)? {
        guard let close = stat.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        var field = 2
        var startTime: UInt64?
        var index = close + 1
        while index < stat.count {
            while index < stat.count && stat[index] == UInt8(ascii: " ") { index += 1 }
            guard index < stat.count else { break }
            field += 1
            var value: UInt64 = 0
            var numeric = true
            while index < stat.count && stat[index] != UInt8(ascii: " ") && stat[index] != UInt8(ascii: "\n") {
                let byte = stat[index]
                if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                    value = value &* 10 &+ UInt64(byte - UInt8(ascii: "0"))
                } else {
                    numeric = false
                }
                index += 1
            }
            if field == 22 { startTime = numeric ? value : nil }
            if field == 23 {
                guard let startTime, numeric else { return nil }
                return (startTime, value)
            }
            if index < stat.count && stat[index] == UInt8(ascii: "\n") { break }
        }
        return nil
    }

    /// The files of the shared mappings (`s` in the permissions) in a `maps` text, parsed from
    /// its bytes: `start-end perms offset major:minor inode path`.
    static func sharedFiles(inMaps maps: [UInt8]) -> Set<FileIdentity> {
        var files = Set<FileIdentity>()
        var lineStart = 0
        while lineStart < maps.count {
            var lineEnd = lineStart
            while lineEnd < maps.count && maps[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
            if let file = sharedFile(maps[lineStart..<lineEnd]) { files.insert(file) }
            lineStart = lineEnd + 1
        }
        return files
    }

    private static func sharedFile(_ line: ArraySlice<UInt8>) -> FileIdentity? {
        var fields: [Range<Int>] = []
        var index = line.startIndex
        while index < line.endIndex && fields.count < 5 {
            while index < line.endIndex && line[index] == UInt8(ascii: " ") { index += 1 }
            let start = index
            while index < line.endIndex && line[index] != UInt8(ascii: " ") { index += 1 }
            if start < index { fields.append(start..<index) }
        }
        guard fields.count == 5, fields[1].count == 4, line[fields[1].lowerBound + 3] == UInt8(ascii: "s") else { return nil }
        let device = fields[3]
        guard let colon = line[device].firstIndex(of: UInt8(ascii: ":")),
              let major = number(line[device.lowerBound..<colon], radix: 16),
              let minor = number(line[(colon + 1)..<device.upperBound], radix: 16),
              let inode = number(line[fields[4]], radix: 10), inode != 0
        else { return nil }
        // Kernel-internal anonymous inodes (anon_inode:…) are not files anyone can punch.
        let rest = line[index...].drop { $0 == UInt8(ascii: " ") }
        if rest.starts(with: Array("anon_inode:".utf8)) { return nil }
        return FileIdentity(deviceMajor: UInt32(major), deviceMinor: UInt32(minor), inode: inode)
    }

    private static func number(_ digits: ArraySlice<UInt8>, radix: UInt64) -> UInt64? {
        guard !digits.isEmpty else { return nil }
        var value: UInt64 = 0
        for byte in digits {
            let digit: UInt64
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt64(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f") where radix == 16: digit = UInt64(byte - UInt8(ascii: "a") + 10)
            default: return nil
            }
            value = value &* radix &+ digit
        }
        return value
    }
}

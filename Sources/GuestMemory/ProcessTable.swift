import Glibc
import LinuxSystem

/// One look at the host's processes: the proc root's directory read once, and each listed
/// process's `stat` read once, for what every reader of the process list needs of it (its
/// start time, virtual size and command name).
///
/// Both readers of the process list take one: ``ProcessMappingIndex`` (who maps which
/// shared file; it reads `maps` only where a process is new or its virtual size changed) and
/// `QEMUGuestDiscovery` (which processes are QEMUs; it reads `exe` only where a process is
/// new or its command name changed). A host has thousands of processes, and each `stat` is a
/// system call and a formatted line: one table taken when either needs it, and handed to the
/// other while it is fresh, halves the cost of following the host.
///
/// A process is listed with what its `stat` said (``Reading``): read, gone (it exited between
/// the directory and its `stat`: `ENOENT`, `ESRCH`), refused by the kernel (`EACCES`,
/// `EPERM`), or unreadable for any other reason (including a line that does not parse). What
/// each reader makes of the last three is its own decision.
public struct ProcessTable: Sendable {
    /// What a process's `stat` says, as far as the readers of the table need.
    public struct Stat: Sendable, Hashable {
        /// `starttime` (field 22): clock ticks after boot. With the pid, the process.
        public var startTime: UInt64
        /// `vsize` (field 23), in bytes.
        public var virtualSize: UInt64
        /// `comm` (field 2), the bytes between the first `(` and the last `)`.
        public var command: [UInt8]

        public init(startTime: UInt64, virtualSize: UInt64, command: [UInt8]) {
            self.startTime = startTime
            self.virtualSize = virtualSize
            self.command = command
        }

        /// The fields of a `/proc/PID/stat` line; nil when it does not parse.
        public init?(parsing stat: [UInt8]) {
            guard let open = stat.firstIndex(of: UInt8(ascii: "(")), let close = stat.lastIndex(of: UInt8(ascii: ")")),
                  open < close, let fields = ProcessMappingIndex.startAndSize(stat)
            else { return nil }
            self.init(startTime: fields.startTime, virtualSize: fields.virtualSize, command: Array(stat[(open + 1)..<close]))
        }
    }

    /// What reading one process's `stat` gave.
    public enum Reading: Sendable {
        case read(Stat)
        /// Its `stat` vanished (`ENOENT`, `ESRCH`): it exited while the table was taken.
        case gone
        /// The kernel refused to show it (`EACCES`, `EPERM`).
        case refused(SystemError)
        /// It could not be read or parsed for another reason.
        case unreadable(SystemError)
    }

    /// One process of the table.
    public struct Entry: Sendable {
        public var pid: pid_t
        public var reading: Reading

        public init(pid: pid_t, reading: Reading) {
            self.pid = pid
            self.reading = reading
        }
    }

    /// Where proc is mounted (a fake tree in tests).
    public let procRoot: String
    /// When it was taken (its directory read).
    public let taken: ContinuousClock.Instant
    /// The processes of the proc root, in directory order.
    public let entries: [Entry]
    /// The `stat` files read to take it: one per listed process.
    public var statReads: Int { entries.count }

    /// A table of given entries (for tests of its readers).
    public init(procRoot: String, taken: ContinuousClock.Instant = .now, entries: [Entry]) {
        self.procRoot = procRoot
        self.taken = taken
        self.entries = entries
    }

    /// Takes the table: one `readdir` pass over `procRoot` and one read of each process's `stat`.
    ///
    /// - Complexity: one `stat` read per process on the host.
    public static func read(procRoot: String = "/proc", at now: ContinuousClock.Instant = .now) -> ProcessTable {
        let entries = ProcessMappingIndex.processIDs(procRoot: procRoot).map { pid in
            Entry(pid: pid, reading: readStat(pid, procRoot: procRoot))
        }
        return ProcessTable(procRoot: procRoot, taken: now, entries: entries)
    }

    /// Reads and parses one process's `stat`.
    public static func readStat(_ pid: pid_t, procRoot: String) -> Reading {
        let path = "\(procRoot)/\(pid)/stat"
        do {
            guard let stat = Stat(parsing: try readWholeFile(path, limit: 4096)) else {
                return .unreadable(SystemError(errno: .ioError, operation: "parse \(path)"))
            }
            return .read(stat)
        } catch where error.errno == .noSuchFileOrDirectory || error.errno == .noSuchProcess {
            return .gone
        } catch where ProcessMappingIndex.isRefusal(error) {
            return .refused(error)
        } catch {
            return .unreadable(error)
        }
    }
}

import CLinux
import Glibc

/// The calling thread's nice value, raised for a span and put back: what the scheduler weighs
/// the thread by against the others that want a CPU (each step of nice is about 25% of CPU
/// share; -10 weighs about nine times the default 0).
///
/// Linux keeps a nice value per thread: `setpriority(PRIO_PROCESS, tid, ...)` with the
/// thread's id (`gettid`) changes that thread alone, not its process. Lowering it (more CPU)
/// needs `CAP_SYS_NICE`; without it the call fails with `EACCES`, and the thread runs as it was.
///
/// A `~Copyable` owner: the value it replaced is put back when it ends (``restore()``, or
/// `deinit`), on the thread that raised it, since the id is the calling thread's.
public struct ThreadNice: ~Copyable {
    /// The thread whose nice value was changed.
    public let thread: pid_t
    /// The nice value before.
    public let previous: Int32
    private var restored = false

    /// Sets the calling thread's nice value to `nice`, keeping the value before.
    ///
    /// The corresponding C calls are `getpriority` and `setpriority` with `PRIO_PROCESS` and
    /// the thread's id.
    public init(raisingCallingThreadTo nice: Int32) throws(SystemError) {
        let thread = samepage_gettid()
        let previous = try Self.nice(of: thread)
        guard setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(thread), nice) == 0 else {
            throw SystemError("setpriority(PRIO_PROCESS, \(thread), \(nice))")
        }
        self.thread = thread
        self.previous = previous
    }

    /// Puts the nice value back (once; later calls do nothing).
    public mutating func restore() {
        guard !restored else { return }
        restored = true
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(thread), previous)
    }

    deinit {
        if !restored { _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(thread), previous) }
    }

    /// The nice value of thread (or process) `id`.
    ///
    /// `getpriority` returns -1 both for a nice value of -1 and for an error: errno tells them apart.
    public static func nice(of id: pid_t) throws(SystemError) -> Int32 {
        errno = 0
        let value = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(id))
        if value == -1 && errno != 0 { throw SystemError("getpriority(PRIO_PROCESS, \(id))") }
        return value
    }

    /// The calling thread's id (`gettid`).
    public static var callingThread: pid_t { samepage_gettid() }
}

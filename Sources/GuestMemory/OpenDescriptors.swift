#if canImport(Glibc)
import Glibc
#endif

/// The open descriptors of a process, as the links of `/proc/PID/fd`: what each one names
/// (`/dev/vfio/7`, `socket:[123]`, `anon_inode:[eventfd]`).
///
/// Walked with readdir and readlinkat only, into one buffer reused for every entry, so that
/// it is cheap enough to run before every reclaim pause.
enum OpenDescriptors {
    /// Calls `body` with the link target of each open descriptor of `pid`, as raw bytes valid
    /// only during the call. A descriptor closed during the walk is skipped.
    ///
    /// Throws `SystemError` with errno `ESRCH` when the process does not exist, or exits
    /// before the walk is over (a zombie or reaped process: its descriptors are gone, so
    /// what was seen may be incomplete); with the failing call's errno otherwise (`EACCES`
    /// without the rights to read another user's descriptors).
    static func forEachTarget(
        of pid: pid_t, procRoot: String = "/proc", _ body: (UnsafeBufferPointer<UInt8>) throws(SystemError) -> Void
    ) throws(SystemError) {
        let process = "\(procRoot)/\(pid)"
        let exited = SystemError(errno: ESRCH, operation: "read \(process)/fd: the process has exited")
        // The process's directory is held for the whole walk: once the process is reaped,
        // lookups in it fail even if a new process gets the same pid.
        let processDirectory = open(process, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard processDirectory >= 0 else { throw errno == ENOENT || errno == ESRCH ? exited : SystemError("open \(process)") }
        defer { close(processDirectory) }
        let descriptors = openat(processDirectory, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptors >= 0 else { throw errno == ENOENT || errno == ESRCH ? exited : SystemError("open \(process)/fd") }
        guard let directory = fdopendir(descriptors) else {
            close(descriptors)
            throw SystemError("fdopendir \(process)/fd")
        }
        defer { closedir(directory) }

        // PATH_MAX, and room for the " (deleted)" the kernel appends to an unlinked file.
        let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: Int(PATH_MAX) + 16)
        defer { buffer.deallocate() }
        while true {
            errno = 0
            guard let entry = readdir(directory) else {
                guard errno == 0 else { throw errno == ENOENT || errno == ESRCH ? exited : SystemError("readdir \(process)/fd") }
                break
            }
            let count = withUnsafePointer(to: &entry.pointee.d_name) { name in
                name.withMemoryRebound(to: CChar.self, capacity: 256) { name -> Int in
                    // "." and ".."; descriptors are numbers.
                    guard name[0] != 0x2e else { return 0 }
                    return buffer.withMemoryRebound(to: CChar.self) { readlinkat(descriptors, name, $0.baseAddress!, $0.count) }
                }
            }
            if count > 0 {
                try body(UnsafeBufferPointer(rebasing: buffer[..<count]))
            } else if count < 0 {
                switch errno {
                case ENOENT, EINVAL: continue  // Closed since readdir; not a link (a fake /proc).
                case ESRCH: throw exited
                default: throw SystemError("readlink \(process)/fd")
                }
            }
        }

        // A process that exits closes all its descriptors: entries still listed would then
        // fail one by one with ENOENT, and the walk would look like a quiet process's.
        guard try isAlive(processDirectory) else { throw exited }
    }

    /// Whether the process of a `/proc/PID` directory is alive: its `stat` can be read and
    /// its state is not zombie (`Z`) or dead (`X`).
    private static func isAlive(_ processDirectory: Int32) throws(SystemError) -> Bool {
        let file = openat(processDirectory, "stat", O_RDONLY | O_CLOEXEC)
        guard file >= 0 else {
            if errno == ENOENT || errno == ESRCH { return false }
            throw SystemError("open stat")
        }
        defer { close(file) }
        // `PID (COMM) STATE ...`: COMM may hold spaces and parentheses, so the state is the
        // byte after the last ") ". The state comes within the first 64 + 16 bytes.
        return try withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 128) { (bytes) throws(SystemError) -> Bool in
            let count = read(file, bytes.baseAddress, bytes.count)
            guard count >= 0 else {
                if errno == ESRCH { return false }
                throw SystemError("read stat")
            }
            let text = bytes[..<count]
            guard let end = text.lastIndex(of: UInt8(ascii: ")")), end + 2 < count else { return false }
            let state = text[end + 2]
            return state != UInt8(ascii: "Z") && state != UInt8(ascii: "X") && state != UInt8(ascii: "x")
        }
    }
}

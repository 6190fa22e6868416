import Glibc
import LinuxSystem

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
        let exited = SystemError(errno: .noSuchProcess, operation: "read \(process)/fd: the process has exited")
        // The process's directory is held for the whole walk: once the process is reaped,
        // lookups in it fail even if a new process gets the same pid.
        let processDirectory: OwnedDescriptor
        do { processDirectory = try .open(process, .readOnly, options: .directory) } catch { throw isGone(error) ? exited : error }
        let fdDirectory: OwnedDescriptor
        do {
            fdDirectory = try .open("fd", .readOnly, options: .directory, relativeTo: processDirectory.descriptor,
                                    operation: "open \(process)/fd")
        } catch {
            throw isGone(error) ? exited : error
        }
        guard let directory = fdopendir(fdDirectory.descriptor.rawValue) else { throw SystemError("fdopendir \(process)/fd") }
        // The directory stream owns the descriptor from here on: closedir closes it.
        let descriptors = fdDirectory.release()
        defer { closedir(directory) }

        // PATH_MAX, and room for the " (deleted)" the kernel appends to an unlinked file.
        let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: Int(PATH_MAX) + 16)
        defer { buffer.deallocate() }
        while true {
            errno = 0
            guard let entry = readdir(directory) else {
                guard errno == 0 else {
                    let error = SystemError("readdir \(process)/fd")
                    throw isGone(error) ? exited : error
                }
                break
            }
            let count = withUnsafePointer(to: &entry.pointee.d_name) { name in
                name.withMemoryRebound(to: CChar.self, capacity: 256) { name -> Int in
                    // "." and ".."; descriptors are numbers.
                    guard name[0] != 0x2e else { return 0 }
                    return buffer.withMemoryRebound(to: CChar.self) { readlinkat(descriptors.rawValue, name, $0.baseAddress!, $0.count) }
                }
            }
            if count > 0 {
                try body(UnsafeBufferPointer(rebasing: buffer[..<count]))
            } else if count < 0 {
                let error = SystemError("readlink \(process)/fd")
                switch error.errno {
                case .noSuchFileOrDirectory, .invalidArgument: continue  // Closed since readdir; not a link (a fake /proc).
                case .noSuchProcess: throw exited
                default: throw error
                }
            }
        }

        // A process that exits closes all its descriptors: entries still listed would then
        // fail one by one with ENOENT, and the walk would look like a quiet process's.
        guard try isAlive(processDirectory.descriptor) else { throw exited }
    }

    /// Whether the process of a `/proc/PID` directory is alive: its `stat` can be read and
    /// its state is not zombie (`Z`) or dead (`X`).
    private static func isAlive(_ processDirectory: FileDescriptor) throws(SystemError) -> Bool {
        // `PID (COMM) STATE ...`: COMM may hold spaces and parentheses, so the state is the
        // byte after the last ") ". The state comes within the first 64 + 16 bytes.
        let file: OwnedDescriptor
        do { file = try .open("stat", .readOnly, relativeTo: processDirectory, operation: "open stat") } catch {
            if isGone(error) { return false }
            throw error
        }
        let text: [UInt8]
        do { text = try file.readToEnd(limit: 128, "read stat") } catch {
            if error.errno == .noSuchProcess { return false }
            throw error
        }
        guard let end = text.lastIndex(of: UInt8(ascii: ")")), end + 2 < text.count else { return false }
        let state = text[end + 2]
        return state != UInt8(ascii: "Z") && state != UInt8(ascii: "X") && state != UInt8(ascii: "x")
    }

    /// The process of a failed call on `/proc/PID` is gone (`ENOENT`, `ESRCH`).
    private static func isGone(_ error: SystemError) -> Bool {
        error.errno == .noSuchFileOrDirectory || error.errno == .noSuchProcess
    }
}

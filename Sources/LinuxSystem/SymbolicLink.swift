import Glibc

/// The target of the symbolic link at `path`, as the link holds it (not resolved further):
/// for a link of /proc such as `/proc/PID/exe`, the path the kernel writes, with its
/// ` (deleted)` suffix when the file was unlinked since it was opened. Throws `readlink PATH`.
///
/// One call into a buffer of `PATH_MAX` and room for that suffix; a longer target (which no
/// /proc link has) is cut there.
///
/// The corresponding C function is `readlink`.
public func readSymbolicLink(_ path: String) throws(SystemError) -> String {
    let capacity = Int(PATH_MAX) + 16
    let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: capacity)
    defer { buffer.deallocate() }
    let count = try retryingInterrupts("readlink \(path)") { readlink(path, buffer, capacity) }
    return buffer.withMemoryRebound(to: UInt8.self, capacity: count) {
        String(decoding: UnsafeBufferPointer(start: $0, count: count), as: UTF8.self)
    }
}

import Glibc
import SystemPackage

/// A file descriptor this value owns: closed exactly once, when the value is dropped or
/// consumed by ``close()``.
///
/// swift-system's `FileDescriptor` is a typed `CInt` that any holder may close, as a raw
/// descriptor is. This is its owner: `~Copyable`, so there is one at a time, and whoever
/// holds it decides when the descriptor goes. ``descriptor`` is lent out for system calls
/// while the owner lives; a borrower never closes it. A type that keeps a descriptor
/// (a guest's backend, a pidfd, a socket) keeps an `OwnedDescriptor`, privately, so that no
/// caller can close it under the type.
///
/// Every descriptor this module opens is close-on-exec (`O_CLOEXEC`, `F_DUPFD_CLOEXEC`): none
/// leaks into a process the daemon starts.
///
/// Sendable: it holds only the number, and the calls made on it are system calls, which are
/// thread-safe; being `~Copyable`, it is closed once, by whichever thread holds it last.
public struct OwnedDescriptor: ~Copyable, @unchecked Sendable {
    /// The descriptor, for system calls while this owner lives. Never close it.
    public let descriptor: FileDescriptor

    /// Takes ownership of `descriptor`, which nothing else may close from now on.
    public init(taking descriptor: FileDescriptor) {
        self.descriptor = descriptor
    }

    deinit { _ = Glibc.close(descriptor.rawValue) }

    /// Opens `path`, close-on-exec, retrying `EINTR`: relative to the directory `directory`
    /// if given (`openat`). A failure is thrown as `open PATH`, or as `operation` if given.
    ///
    /// The corresponding C function is `openat`.
    public static func open(
        _ path: String, _ mode: FileDescriptor.AccessMode, options: FileDescriptor.OpenOptions = [],
        permissions: FilePermissions? = nil, relativeTo directory: FileDescriptor? = nil,
        operation: @autoclosure () -> String? = nil
    ) throws(SystemError) -> OwnedDescriptor {
        let flags = mode.rawValue | options.rawValue | O_CLOEXEC
        let raw = try retryingInterrupts(operation() ?? "open \(path)") {
            openat(directory?.rawValue ?? AT_FDCWD, path, flags, permissions?.rawValue ?? 0)
        }
        return OwnedDescriptor(taking: FileDescriptor(rawValue: raw))
    }

    /// A second descriptor for the same open file, close-on-exec, with an owner of its own.
    ///
    /// The corresponding C call is `fcntl(F_DUPFD_CLOEXEC)`.
    public func duplicate(_ operation: @autoclosure () -> String = "dup") throws(SystemError) -> OwnedDescriptor {
        let raw = try retryingInterrupts(operation()) { fcntl(descriptor.rawValue, F_DUPFD_CLOEXEC, 0) }
        return OwnedDescriptor(taking: FileDescriptor(rawValue: raw))
    }

    /// Reads from the file's offset to its end, or `limit` bytes, whichever comes first, with
    /// `read(2)` and never `stat` (a file in /proc reports a size of 0), retrying `EINTR`.
    /// A failed read is thrown as `operation`.
    ///
    /// - Complexity: O(n) in the bytes read; one system call per 64 KiB.
    public func readToEnd(limit: Int = .max, _ operation: @autoclosure () -> String) throws(SystemError) -> [UInt8] {
        var bytes: [UInt8] = []
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, min(65536, limit)), alignment: 1)
        defer { chunk.deallocate() }
        while bytes.count < limit {
            let wanted = min(chunk.count, limit - bytes.count)
            let count = try retryingInterrupts(operation()) { Glibc.read(descriptor.rawValue, chunk.baseAddress, wanted) }
            if count == 0 { break }
            bytes += chunk[..<count]
        }
        return bytes
    }

    /// Closes the descriptor now. An error of `close` is not reported: the descriptor is gone
    /// either way, and retrying could close another thread's new one.
    ///
    /// The corresponding C function is `close`.
    public consuming func close() {
        _ = Glibc.close(descriptor.rawValue)
        discard self
    }

    /// Gives the descriptor up without closing it, to a call that takes it over (`fdopendir`,
    /// whose `closedir` closes it).
    public consuming func release() -> FileDescriptor {
        let descriptor = self.descriptor
        discard self
        return descriptor
    }
}

/// The whole content of the file at `path`, read with `read(2)` until its end (at most `limit`
/// bytes): the one whole-file reader, for files in /proc whose size `stat` reports as 0 as
/// much as for any other. Throws `open PATH` or `read PATH`.
public func readWholeFile(_ path: String, limit: Int = .max) throws(SystemError) -> [UInt8] {
    let file = try OwnedDescriptor.open(path, .readOnly)
    return try file.readToEnd(limit: limit, "read \(path)")
}

/// The file at `path`, read whole (``readWholeFile(_:limit:)``) and parsed from its text by
/// `parse`: a file of /proc or /sys, typed. Throws `open PATH` or `read PATH`, or `EINVAL` as
/// `parse PATH` when `parse` finds no value in the text.
public func readParsedFile<Value>(
    _ path: String, limit: Int = .max, _ parse: (String) -> Value?
) throws(SystemError) -> Value {
    let bytes = try readWholeFile(path, limit: limit)
    guard let value = parse(String(decoding: bytes, as: UTF8.self)) else {
        throw SystemError(errno: .invalidArgument, operation: "parse \(path)")
    }
    return value
}

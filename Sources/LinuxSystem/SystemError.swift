import Glibc
import SystemPackage

// # errno is read first
//
// `errno` belongs to the calling thread, and anything that runs between a failed call and
// the read of `errno` may overwrite it: building the message that names the call (string
// interpolation allocates, and `malloc` may set errno), a release that runs a deinit which
// makes a system call of its own, a log line. An errno read after any of that can be
// another call's, and the error then names the wrong cause (`EINTR` retried forever, a
// vanished process taken for a permission problem).
//
// So errno is captured immediately after the call, before anything else runs, as
// swift-system's `valueOrErrno(retryOnInterrupt:_:)` does: ``SystemError/init(_:)`` and
// ``retryingInterrupts(_:_:)`` take the operation's name as an autoclosure and build it
// only once `Errno` has been read. Never write `SystemError(errno: Errno(rawValue: errno),
// operation: "open \(path)")` after a failure: the arguments run left to right only by
// accident of the order they are written in.

/// A failed system call: the errno it set and what was being done.
///
/// Its ``description`` is the one way Samepage writes a failed call, `operation: strerror
/// (errno N)`, such as `open /proc/42/maps: No such file or directory (errno 2)`; every error
/// type that carries an errno formats it through this one.
public struct SystemError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What the call set `errno` to.
    public var errno: Errno
    /// The call and its object, such as `"open /proc/42/map_files/7f00-7f80"`.
    public var operation: String

    public init(errno: Errno, operation: String) {
        self.errno = errno
        self.operation = operation
    }

    /// Captures the calling thread's `errno`, then builds `operation`: call it first thing
    /// after the failed call.
    public init(_ operation: @autoclosure () -> String) {
        let errno = Errno(rawValue: Glibc.errno)
        self.init(errno: errno, operation: operation())
    }

    /// `operation: strerror (errno N)`.
    public var description: String { "\(operation): \(errno) (errno \(errno.rawValue))" }
}

/// Calls `call` until it does not fail with `EINTR`, and returns its result; a negative
/// result is a failure, thrown with the errno read at once and `operation` built after it.
@discardableResult
public func retryingInterrupts<T: BinaryInteger>(
    _ operation: @autoclosure () -> String, _ call: () -> T
) throws(SystemError) -> T {
    while true {
        let result = call()
        if result >= 0 { return result }
        let errno = Errno(rawValue: Glibc.errno)
        if errno != .interrupted { throw SystemError(errno: errno, operation: operation()) }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: the errno it set and what was being done.
public struct SystemError: Error, Sendable, Hashable, CustomStringConvertible {
    public var errno: Int32
    /// The call and its object, such as `"open /proc/42/map_files/7f00-7f80"`.
    public var operation: String

    public init(errno: Int32, operation: String) {
        self.errno = errno
        self.operation = operation
    }

    /// Captures the calling thread's current `errno`.
    public init(_ operation: String) {
        self.init(errno: Glibc.errno, operation: operation)
    }

    public var description: String { "\(operation): \(String(cString: strerror(errno))) (errno \(errno))" }
}

/// Retries a system call that was interrupted by a signal; throws on any other failure.
@discardableResult
func retryingInterrupts<T: BinaryInteger>(_ operation: @autoclosure () -> String, _ call: () -> T) throws(SystemError) -> T {
    while true {
        let result = call()
        if result >= 0 { return result }
        if errno != EINTR { throw SystemError(operation()) }
    }
}

/// Linux calls that Swift's Glibc module does not import (their headers are not in its
/// module map), resolved once from the C library. All exist in glibc 2.36 and later.
enum LinuxCalls {
    static let pidfdOpen = resolve("pidfd_open", as: (@convention(c) (pid_t, UInt32) -> Int32).self)
    static let memfdCreate = resolve("memfd_create", as: (@convention(c) (UnsafePointer<CChar>, UInt32) -> Int32).self)
    private static let fstatfsCall = resolve("fstatfs", as: (@convention(c) (Int32, UnsafeMutableRawPointer) -> Int32).self)
    private static let fallocateCall = resolve("fallocate", as: (@convention(c) (Int32, Int32, off_t, off_t) -> Int32).self)

    /// `fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)`: frees the blocks of a byte
    /// range, which then reads as zeroes; the file keeps its size.
    static func punchHole(_ descriptor: Int32, offset: Int, length: Int) throws(SystemError) {
        let punchHoleKeepSize: Int32 = 0x02 | 0x01
        try retryingInterrupts("fallocate(PUNCH_HOLE) at \(offset)+\(length)") {
            fallocateCall(descriptor, punchHoleKeepSize, off_t(offset), off_t(length))
        }
    }

    /// `fallocate(0)` over a range: allocates its blocks again (holes become zero-filled pages).
    static func allocate(_ descriptor: Int32, offset: Int, length: Int) throws(SystemError) {
        try retryingInterrupts("fallocate at \(offset)+\(length)") {
            fallocateCall(descriptor, 0, off_t(offset), off_t(length))
        }
    }

    /// The filesystem of an open file: `(f_type, f_bsize)` of `struct statfs`, whose first
    /// two fields are `long` on every 64-bit Linux ABI glibc supports.
    static func fileSystem(of descriptor: Int32) throws(SystemError) -> (type: Int, blockSize: Int) {
        // struct statfs is 120 bytes on 64-bit ABIs; leave room.
        try withUnsafeTemporaryAllocation(byteCount: 256, alignment: 8) { (buffer) throws(SystemError) in
            try retryingInterrupts("fstatfs") { fstatfsCall(descriptor, buffer.baseAddress!) }
            return (buffer.load(fromByteOffset: 0, as: Int.self), buffer.load(fromByteOffset: 8, as: Int.self))
        }
    }

    private static func resolve<F>(_ name: String, as type: F.Type) -> F {
        // RTLD_DEFAULT is a null handle in glibc.
        guard let symbol = dlsym(nil, name) else { fatalError("the C library has no \(name) (glibc 2.36 or later needed)") }
        return unsafeBitCast(symbol, to: type)
    }

    static let tmpfsMagic = 0x0102_1994
    static let hugetlbfsMagic = 0x9584_58f6
}

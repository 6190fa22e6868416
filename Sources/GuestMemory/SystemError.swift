#if canImport(Glibc)
import Glibc
#endif
import CLinux

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

/// Linux calls that Swift's Glibc module does not import, through the CLinux shim.
enum LinuxCalls {
    static func pidfdOpen(_ pid: pid_t, _ flags: UInt32) -> Int32 { samepage_pidfd_open(pid, flags) }
    static func memfdCreate(_ name: UnsafePointer<CChar>, _ flags: UInt32) -> Int32 { samepage_memfd_create(name, flags) }

    /// `fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)`: frees the blocks of a byte
    /// range, which then reads as zeroes; the file keeps its size.
    static func punchHole(_ descriptor: Int32, offset: Int, length: Int) throws(SystemError) {
        try retryingInterrupts("fallocate(PUNCH_HOLE) at \(offset)+\(length)") {
            samepage_punch_hole(descriptor, Int64(offset), Int64(length))
        }
    }

    /// `fallocate(0)` over a range: allocates its blocks again (holes become zero-filled pages).
    static func allocate(_ descriptor: Int32, offset: Int, length: Int) throws(SystemError) {
        try retryingInterrupts("fallocate at \(offset)+\(length)") {
            samepage_allocate(descriptor, Int64(offset), Int64(length))
        }
    }

    /// The filesystem of an open file: `f_type` and `f_bsize` of `fstatfs`.
    static func fileSystem(of descriptor: Int32) throws(SystemError) -> (type: Int, blockSize: Int) {
        var type = 0, blockSize = 0
        try retryingInterrupts("fstatfs") { samepage_filesystem(descriptor, &type, &blockSize) }
        return (type, blockSize)
    }

    static let tmpfsMagic = 0x0102_1994
    static let hugetlbfsMagic = 0x9584_58f6
}

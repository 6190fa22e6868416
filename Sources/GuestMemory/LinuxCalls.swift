import CLinux
import Glibc
import LinuxSystem

/// Linux calls that Swift's Glibc module does not import, through the CLinux shim.
enum LinuxCalls {
    /// `pidfd_open(2)`: a descriptor for process `pid`, readable once it exits.
    static func pidfdOpen(_ pid: pid_t) throws(SystemError) -> OwnedDescriptor {
        let raw = try retryingInterrupts("pidfd_open \(pid)") { samepage_pidfd_open(pid, 0) }
        return OwnedDescriptor(taking: FileDescriptor(rawValue: raw))
    }

    /// `process_vm_readv(2)` of one run: copies `buffer.count` bytes at `address` in process
    /// `pid` into `buffer`, in one call. Returns the bytes copied: fewer than asked when the
    /// run reaches a remote page that is not mapped (the call stops there).
    ///
    /// The copy faults in any remote page that is not present, as a read by the process
    /// itself would: callers read only pages they know to be present.
    static func processVMRead(_ pid: pid_t, into buffer: UnsafeMutableRawBufferPointer, at address: UInt64) throws(SystemError) -> Int {
        try retryingInterrupts("process_vm_readv \(pid) at 0x\(String(address, radix: 16))+\(buffer.count)") {
            samepage_process_vm_read(pid, buffer.baseAddress, UInt(address), UInt(buffer.count))
        }
    }

    static func memfdCreate(_ name: UnsafePointer<CChar>, _ flags: UInt32) -> Int32 { samepage_memfd_create(name, flags) }

    /// `fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)`: frees the blocks of a byte
    /// range, which then reads as zeroes; the file keeps its size.
    static func punchHole(_ descriptor: FileDescriptor, offset: Int, length: Int) throws(SystemError) {
        try retryingInterrupts("fallocate(PUNCH_HOLE) at \(offset)+\(length)") {
            samepage_punch_hole(descriptor.rawValue, Int64(offset), Int64(length))
        }
    }

    /// `fallocate(0)` over a range: allocates its blocks again (holes become zero-filled pages).
    static func allocate(_ descriptor: FileDescriptor, offset: Int, length: Int) throws(SystemError) {
        try retryingInterrupts("fallocate at \(offset)+\(length)") {
            samepage_allocate(descriptor.rawValue, Int64(offset), Int64(length))
        }
    }

    /// The filesystem of an open file: `f_type` and `f_bsize` of `fstatfs`.
    static func fileSystem(of descriptor: FileDescriptor) throws(SystemError) -> (type: Int, blockSize: Int) {
        var type = 0, blockSize = 0
        try retryingInterrupts("fstatfs") { samepage_filesystem(descriptor.rawValue, &type, &blockSize) }
        return (type, blockSize)
    }

    static let tmpfsMagic = 0x0102_1994
    static let hugetlbfsMagic = 0x9584_58f6
}

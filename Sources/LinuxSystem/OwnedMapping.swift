import Glibc

/// A memory mapping this value owns: unmapped exactly once, when the value is dropped.
///
/// `~Copyable`, as ``OwnedDescriptor`` is: the type that keeps a mapping keeps its owner, so
/// the address cannot outlive the mapping in a copy, and no caller can unmap it.
///
/// Sendable: it holds an address and a size; what may be done through the address is the
/// keeper's business.
public struct OwnedMapping: ~Copyable, @unchecked Sendable {
    /// Where the mapping starts; valid while this owner lives.
    public let address: UnsafeMutableRawPointer
    /// Its length in bytes.
    public let size: Int

    /// Maps `size` bytes of `file` from byte `offset` (`mmap(NULL, size, protection, flags,
    /// file, offset)`). A failure is thrown as `operation`.
    ///
    /// The corresponding C function is `mmap`.
    public init(
        size: Int, protection: CInt, flags: CInt, of file: FileDescriptor, at offset: Int,
        _ operation: @autoclosure () -> String
    ) throws(SystemError) {
        let address = mmap(nil, size, protection, flags, file.rawValue, off_t(offset))
        guard let address, address != MAP_FAILED else { throw SystemError(operation()) }
        self.address = address
        self.size = size
    }

    deinit { munmap(address, size) }
}

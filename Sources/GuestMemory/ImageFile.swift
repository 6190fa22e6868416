import CLinux
import Glibc
import LinuxSystem
import SamepageCore

/// A memory image file (a dump, a benchmark fleet, a file-backed guest's RAM copy) as a slot's
/// memory: one file, read with pread over its allocated ranges only.
///
/// Holes are found with `lseek(SEEK_DATA/SEEK_HOLE)` and never read, so scanning a sparse
/// file allocates nothing. The file descriptor is closed when the object goes away.
public final class ImageFile: PageSource {
    /// The path it was opened from, for reports.
    public let path: String
    public let pageCount: Int
    private let file: OwnedDescriptor

    /// Opens `path` read-only. Throws ``ImageFileError`` for a file that can't be opened, is
    /// not a regular file, is empty, or whose size is not a whole number of pages.
    public init(path: String) throws(ImageFileError) {
        self.path = path
        let file: OwnedDescriptor
        do { file = try .open(path, .readOnly) } catch { throw .cannotOpen(path: path, errno: error.errno) }
        var st = stat()
        guard fstat(file.descriptor.rawValue, &st) == 0 else {
            let failure = SystemError("fstat \(path)")
            throw .cannotOpen(path: path, errno: failure.errno)
        }
        guard st.st_mode & S_IFMT == S_IFREG else { throw .notARegularFile(path: path) }
        let size = Int(st.st_size)
        guard size > 0 else { throw .empty(path: path) }
        guard size % pageSize == 0 else { throw .notPageMultiple(path: path, size: size) }
        self.file = file
        self.pageCount = size / pageSize
    }

    public func residency(of pages: Range<Int>, into vector: UnsafeMutableBufferPointer<UInt8>) throws {
        vector.update(repeating: 0)
        let end = off_t(pages.upperBound * pageSize)
        var offset = off_t(pages.lowerBound * pageSize)
        while offset < end {
            let data = lseek(file.descriptor.rawValue, offset, samepage_seek_data)
            if data < 0 {
                let error = SystemError("lseek(SEEK_DATA)")
                if error.errno == .noSuchAddressOrDevice { return }  // ENXIO: no data after offset
                throw ImageFileError.io(path: path, operation: error.operation, errno: error.errno)
            }
            if data >= end { return }
            var hole = lseek(file.descriptor.rawValue, data, samepage_seek_hole)
            if hole < 0 {
                let error = SystemError("lseek(SEEK_HOLE)")
                throw ImageFileError.io(path: path, operation: error.operation, errno: error.errno)
            }
            hole = min(hole, end)
            // A page is resident if any of its bytes is allocated.
            let first = Int(data) / pageSize
            let last = (Int(hole) + pageSize - 1) / pageSize
            for page in first..<last { vector[page - pages.lowerBound] = 1 }
            offset = hole
        }
    }

    public func read(_ pages: Range<Int>, into buffer: UnsafeMutableRawBufferPointer) throws {
        switch preadFully(file.descriptor, into: buffer, at: pages.lowerBound * pageSize) {
        case .complete: return
        case .endOfFile(let offset): throw ImageFileError.truncated(path: path, offset: offset)
        case .failed(let error): throw ImageFileError.io(path: path, operation: "pread", errno: error)
        }
    }
}

/// How a read of a whole buffer ended.
enum PreadOutcome {
    case complete
    /// The file ended at this byte offset before the buffer was full.
    case endOfFile(at: Int)
    case failed(errno: Errno)
}

/// Reads exactly `buffer.count` bytes at `offset`, retrying partial reads and EINTR: the one
/// pread loop of this module, for image files and guest RAM backends alike.
func preadFully(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> PreadOutcome {
    var done = 0
    while done < buffer.count {
        let n = pread(fd.rawValue, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
        if n > 0 {
            done += n
        } else if n == 0 {
            return .endOfFile(at: offset + done)
        } else {
            let error = Errno(rawValue: errno)
            if error != .interrupted { return .failed(errno: error) }
        }
    }
    return .complete
}

/// Why an image file can't be scanned.
public enum ImageFileError: Error, Equatable, CustomStringConvertible {
    case cannotOpen(path: String, errno: Errno)
    case notARegularFile(path: String)
    case empty(path: String)
    case notPageMultiple(path: String, size: Int)
    case io(path: String, operation: String, errno: Errno)
    case truncated(path: String, offset: Int)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let e): SystemError(errno: e, operation: "open \(path)").description
        case .notARegularFile(let path): "\(path): not a regular file"
        case .empty(let path): "\(path): empty file, nothing to scan"
        case .notPageMultiple(let path, let size):
            "\(path): size \(size) bytes is not a multiple of the page size (\(pageSize) bytes)"
        case .io(let path, let op, let e): SystemError(errno: e, operation: "\(op) \(path)").description
        case .truncated(let path, let offset): "\(path): file ended at byte \(offset) while reading (truncated under us)"
        }
    }
}

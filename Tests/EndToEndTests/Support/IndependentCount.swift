import Glibc
import Foundation
import Logging
import SamepageAgent
import SamepageCore
import SamepageModel
import Synchronization
import Testing

/// An independent page-by-page count of a set of backends, made without the engine: the test
/// opens each backend itself, asks mincore which pages are resident, reads each with its own
/// pread and counts contents by a 128-bit fingerprint of its own.
struct IndependentCount: Equatable, CustomStringConvertible {
    var pagesShared = 0
    var pagesSharing = 0
    var pagesUnshared = 0
    var zeroPages = 0
    var residentPages = 0

    struct Fingerprint: Hashable {
        var a: UInt64
        var b: UInt64
    }

    /// `backends`: for each guest, the QEMU pid and the address range of its RAM mapping.
    init(backends: [(pid: pid_t, start: UInt64, end: UInt64)]) throws {
        var counts: [Fingerprint: Int] = [:]
        let page = 4096
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: page, alignment: page)
        defer { buffer.deallocate() }
        for backend in backends {
            let path = "/proc/\(backend.pid)/map_files/\(String(backend.start, radix: 16))-\(String(backend.end, radix: 16))"
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw TestHost.ScriptFailed(description: "open \(path): errno \(errno)") }
            defer { close(fd) }
            let size = Int(backend.end - backend.start)
            let mapping = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0)!
            defer { munmap(mapping, size) }
            var vector = [UInt8](repeating: 0, count: size / page)
            guard mincore(mapping, size, &vector) == 0 else { throw TestHost.ScriptFailed(description: "mincore: errno \(errno)") }
            for index in vector.indices where vector[index] & 1 != 0 {
                guard pread(fd, buffer, page, off_t(index * page)) == page else {
                    throw TestHost.ScriptFailed(description: "pread \(path) page \(index)")
                }
                residentPages += 1
                let words = buffer.assumingMemoryBound(to: UInt64.self)
                var a: UInt64 = 0xCBF2_9CE4_8422_2325, b: UInt64 = 0x1234_5678_9ABC_DEF1, any: UInt64 = 0
                for i in 0..<(page / 8) {
                    any |= words[i]
                    a = (a ^ words[i]) &* 0x100_0000_01B3
                    b = (b &+ words[i] &* 0x9E37_79B9_7F4A_7C15) ^ (b >> 29)
                }
                if any == 0 { zeroPages += 1 } else { counts[Fingerprint(a: a, b: b), default: 0] += 1 }
            }
        }
        for (_, n) in counts {
            if n >= 2 {
                pagesShared += 1
                pagesSharing += n - 1
            } else {
                pagesUnshared += 1
            }
        }
    }

    var description: String {
        "shared \(pagesShared) sharing \(pagesSharing) unshared \(pagesUnshared) zero \(zeroPages) of \(residentPages) resident"
    }
}

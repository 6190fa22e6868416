import Foundation
import Glibc
@testable import GuestMemory
import LinuxSystem
import SamepageCore
import Testing

@Suite struct ProcessPageMapTests {
    func decode(_ entries: [UInt64]) throws -> [UInt8] {
        var vector = [UInt8](repeating: 0xfe, count: entries.count)
        try entries.withUnsafeBytes { bytes in
            try vector.withUnsafeMutableBufferPointer { try ProcessPageMap.decodeResidency(bytes, into: $0) }
        }
        return vector
    }

    @Test func decodesTheKernelsBits() throws {
        let present: UInt64 = 1 << 63, swapped: UInt64 = 1 << 62, file: UInt64 = 1 << 61
        let exclusive: UInt64 = 1 << 56, softDirty: UInt64 = 1 << 55
        let page = PageMapEntry(rawValue: present | exclusive | softDirty | 0x12345)
        #expect(page.isPresent && !page.isSwapped && !page.isFileOrSharedAnonymous)
        #expect(page.isExclusivelyMapped && page.isSoftDirty && page.frameNumber == 0x12345 && page.isInRAM)
        let out = PageMapEntry(rawValue: swapped | (7 << 5) | 2)  // Swap offset 7 of swap device 2.
        #expect(!out.isPresent && out.isSwapped && out.frameNumber == nil && !out.isInRAM && out.isValid)
        #expect(PageMapEntry(rawValue: present | file).isFileOrSharedAnonymous)
        #expect(PageMapEntry(rawValue: present).frameNumber == 0)  // Without CAP_SYS_ADMIN.
        #expect(!PageMapEntry(rawValue: 0).isInRAM)

        // Untouched, present, swapped, present file page, present with soft-dirty.
        #expect(try decode([0, present | 9, swapped | 3, present | file, present | softDirty]) == [0, 1, 0, 1, 1])
    }

    @Test func malformedBytesThrow() throws {
        let present: UInt64 = 1 << 63
        // Both present and swapped: no kernel writes it.
        #expect(throws: PageMapError.malformed(what: "pagemap", detail: "entry 1 is 0xc000000000000000, both present and swapped")) {
            _ = try decode([present, present | 1 << 62])
        }
        // Not a whole number of entries, or not one entry per page.
        var vector = [UInt8](repeating: 0, count: 2)
        let twelve = [UInt8](repeating: 0, count: 12)
        let error = #expect(throws: PageMapError.self) {
            try twelve.withUnsafeBytes { bytes in try vector.withUnsafeMutableBufferPointer { try ProcessPageMap.decodeResidency(bytes, into: $0) } }
        }
        #expect(error?.description.contains("12 bytes is not a whole number") == true)
        let eight = [UInt8](repeating: 0, count: 8)
        #expect(throws: PageMapError.malformed(what: "pagemap", detail: "1 entries for 2 pages")) {
            try eight.withUnsafeBytes { bytes in try vector.withUnsafeMutableBufferPointer { try ProcessPageMap.decodeResidency(bytes, into: $0) } }
        }
    }

    @Test func shortReadsThrow() throws {
        // A file posing as a pagemap that ends in the middle of the second entry.
        let path = "/tmp/samepage-pagemap-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try Data(repeating: 0, count: 12).write(to: URL(fileURLWithPath: path))
        defer { unlink(path) }
        let fake = ProcessPageMap(taking: try OwnedDescriptor.open(path, .readOnly), pid: 0, what: "fake pagemap")
        var vector = [UInt8](repeating: 0, count: 2)
        #expect(throws: PageMapError.shortRead(what: "fake pagemap", offset: 0, expected: 16, got: 12)) {
            try vector.withUnsafeMutableBufferPointer { try fake.residency(ofPagesAt: 0..<0x2000, into: $0) }
        }
        // The kernel's own: above the top of the user address space it reads nothing.
        let own = try ProcessPageMap(pid: getpid())
        let top: UInt64 = 0x8000_0000_0000
        #expect(throws: PageMapError.shortRead(what: "pagemap of \(getpid())", offset: Int(top / 4096 * 8), expected: 16, got: 0)) {
            try vector.withUnsafeMutableBufferPointer { try own.residency(ofPagesAt: top..<(top + 0x2000), into: $0) }
        }
    }

    /// This process's own memory, across more than one batch: exactly the written pages.
    @Test func readsInBatches() throws {
        let pages = ProcessPageMap.batchPages * 2 + 100
        let size = pages * pageSize
        let base = try #require(mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        #expect(base != MAP_FAILED)
        defer { munmap(base, size) }
        _ = madvise(base, size, MADV_NOHUGEPAGE)
        let written = [0, 1, ProcessPageMap.batchPages - 1, ProcessPageMap.batchPages, pages - 1]
        for page in written { writePrivatePattern(UInt64(page + 1), at: base + page * pageSize) }

        let pagemap = try ProcessPageMap(pid: getpid())
        let start = UInt64(UInt(bitPattern: base))
        var vector = [UInt8](repeating: 0xfe, count: pages)
        try vector.withUnsafeMutableBufferPointer { try pagemap.residency(ofPagesAt: start..<(start + UInt64(size)), into: $0) }
        #expect(vector.indices.filter { vector[$0] == 1 } == written)
        #expect(vector.allSatisfy { $0 <= 1 })
        #expect(try pagemap.allInRAM(start..<(start + 2 * UInt64(pageSize))))
        #expect(try !pagemap.allInRAM(start..<(start + 3 * UInt64(pageSize))))
        let entries = try pagemap.entries(ofPagesAt: start..<(start + 3 * UInt64(pageSize)))
        #expect(entries.map(\.isPresent) == [true, true, false])
        #expect(entries[0].isExclusivelyMapped && !entries[0].isFileOrSharedAnonymous)
    }
}

import Glibc
import Testing
@testable import GuestMemory

/// Lines as /proc/PID/maps prints them for a QEMU guest with memfd RAM, an ivshmem device, a
/// vCPU and a hugetlbfs NUMA cell. (QEMU 7.2 names every memfd `memory-backend-memfd`; the
/// name does not matter to the matching.)
let qemuMaps = """
55d0c8a00000-55d0c8e6c000 r--p 00000000 fe:01 1180321                    /usr/bin/qemu-system-x86_64
55d0c8e6c000-55d0c9b3a000 r-xp 0046c000 fe:01 1180321                    /usr/bin/qemu-system-x86_64
55d0caf2b000-55d0cb8d0000 rw-p 00000000 00:00 0                          [heap]
7f2a40000000-7f2a50000000 rw-s 00000000 00:01 2052                       /memfd:pc.ram (deleted)
7f2a50000000-7f2a50200000 rw-p 00000000 00:00 0 
7f2a5a000000-7f2a5a001000 rw-s 00000000 00:0e 11                         anon_inode:kvm-vcpu:0
7f2a5b000000-7f2a5b400000 rw-s 00000000 00:2d 1234                       /dev/shm/my shmem0
7f2a5c000000-7f2a7c000000 rw-s 00000000 00:10 99                         /dev/hugepages/libvirt/qemu/1-nfv/qemu_back_mem.ram-node0.AbCdEf (deleted)
7f2a7d000000-7f2a7d021000 r--s 00000000 00:05 1029                       /dev/zero (deleted)
7ffd3b5f2000-7ffd3b613000 rw-p 00000000 00:00 0                          [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
"""

@Suite struct MemoryMappingTests {
    @Test func parsesQEMUsMaps() throws {
        let mappings = MemoryMapping.parse(maps: qemuMaps)
        #expect(mappings.count == 11)

        let ram = mappings[3]
        #expect(ram.addresses == 0x7f2a_4000_0000..<0x7f2a_5000_0000)
        #expect(ram.length == 256 << 20)
        #expect(ram.readable && ram.writable && !ram.executable && ram.shared)
        #expect(ram.fileOffset == 0)
        #expect(ram.file == FileIdentity(deviceMajor: 0, deviceMinor: 1, inode: 2052))
        #expect(ram.path == "/memfd:pc.ram" && ram.deleted && ram.isMemfd && ram.isSharedFileMapping)
        #expect(ram.mapFilesName == "7f2a40000000-7f2a50000000")

        let text = mappings[1]
        #expect(text.executable && !text.shared && text.fileOffset == 0x46c000)
        #expect(text.file == FileIdentity(deviceMajor: 0xfe, deviceMinor: 1, inode: 1_180_321))
        #expect(!text.isSharedFileMapping && !text.deleted)

        #expect(mappings[2].path == "[heap]" && mappings[2].file.inode == 0)
        #expect(mappings[4].path == nil && !mappings[4].isSharedFileMapping)
        #expect(mappings[5].path == "anon_inode:kvm-vcpu:0" && !mappings[5].isSharedFileMapping)
        #expect(mappings[6].path == "/dev/shm/my shmem0" && !mappings[6].deleted && mappings[6].isSharedFileMapping)
        #expect(mappings[7].path == "/dev/hugepages/libvirt/qemu/1-nfv/qemu_back_mem.ram-node0.AbCdEf" && mappings[7].deleted)
        #expect(!mappings[8].writable && mappings[8].shared)
        #expect(mappings[10].addresses.upperBound == 0xffff_ffff_ff60_1000)
    }

    @Test func parsesARealGuestsLine() throws {
        // From QEMU 7.2 running a 256 MiB memfd guest under libvirt 9.0 here.
        let line = "7f544bfff000-7f545bfff000 rw-s 00000000 00:01 1081                       /memfd:memory-backend-memfd (deleted)"
        let mapping = try #require(MemoryMapping(mapsLine: line[...]))
        #expect(mapping.length == 256 << 20 && mapping.isMemfd && mapping.deleted && mapping.isSharedFileMapping)
        #expect(mapping.path == "/memfd:memory-backend-memfd" && mapping.file.inode == 1081)
        #expect(mapping.mapFilesName == "7f544bfff000-7f545bfff000")
    }

    @Test func skipsGarbage() {
        #expect(MemoryMapping(mapsLine: "") == nil)
        #expect(MemoryMapping(mapsLine: "not a maps line") == nil)
        #expect(MemoryMapping(mapsLine: "7f00-7e00 rw-s 00000000 00:01 5 /x") == nil)  // end before start
        #expect(MemoryMapping(mapsLine: "7f00-7f10 rw-s 00000000 0001 5 /x") == nil)
        #expect(MemoryMapping.parse(maps: "junk\n" + qemuMaps + "\n\nmore junk").count == 11)
    }

    @Test func coalescesSplitAreas() {
        // One memfd mapping split in three by madvise, then a second, separate mapping of the
        // same file, and a neighbour of another file.
        let maps = """
        7f0000000000-7f0000100000 rw-s 00000000 00:01 7                          /memfd:pc.ram (deleted)
        7f0000100000-7f0000300000 rw-s 00100000 00:01 7                          /memfd:pc.ram (deleted)
        7f0000300000-7f0000400000 r--s 00300000 00:01 7                          /memfd:pc.ram (deleted)
        7f0000400000-7f0000500000 rw-s 00000000 00:01 7                          /memfd:pc.ram (deleted)
        7f0000500000-7f0000600000 rw-s 00100000 00:01 8                          /memfd:other (deleted)
        """
        let joined = MemoryMapping.coalesced(MemoryMapping.parse(maps: maps))
        #expect(joined.map(\.addresses) == [
            0x7f00_0000_0000..<0x7f00_0040_0000, 0x7f00_0040_0000..<0x7f00_0050_0000, 0x7f00_0050_0000..<0x7f00_0060_0000,
        ])
        #expect(joined[0].readable && !joined[0].writable && joined[0].fileOffset == 0)
        #expect(joined[2].fileOffset == 0x100000)
    }

    @Test func readsOwnMaps() throws {
        let mine = try MemoryMapping.read(pid: getpid())
        #expect(mine.contains { $0.path == "[stack]" })
        let error = #expect(throws: SystemError.self) { try MemoryMapping.read(pid: 0x3fff_ffff) }
        #expect(error?.errno == .noSuchFileOrDirectory)
    }
}

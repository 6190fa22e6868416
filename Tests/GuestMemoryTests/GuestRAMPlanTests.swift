import Glibc
import Testing
@testable import GuestMemory

@Suite struct GuestRAMPlanTests {
    static let mib = 1 << 20
    static let memfdRAM = MemoryBackendObject(id: "pc.ram", kind: .memfd, size: 256 * mib, shared: true)

    func plan(_ backends: [MemoryBackendObject], _ expected: [ExpectedRegion], _ maps: String = qemuMaps) throws(UnmappableReason) -> [String: UInt64] {
        let plan = try GuestRAMPlan.match(backends: backends, expected: expected, mappings: MemoryMapping.parse(maps: maps))
        return Dictionary(uniqueKeysWithValues: plan.map { ($0.id, $0.mapping.addresses.lowerBound) })
    }

    @Test func memfdGuest() throws {
        let expected = [ExpectedRegion(backendID: nil, size: 256 * Self.mib)]
        #expect(try plan([Self.memfdRAM], expected) == ["pc.ram": 0x7f2a_4000_0000])
        // Without the XML, the command line alone.
        #expect(try plan([Self.memfdRAM], []) == ["pc.ram": 0x7f2a_4000_0000])
    }

    @Test func equalNUMACellsPairInAddressOrderAndFilesMatchTheirMemPath() throws {
        let maps = """
        7f0000000000-7f0040000000 rw-s 00000000 00:10 21                         /dev/hugepages/libvirt/qemu/1-nfv/qemu_back_mem.ram-node0.Ab (deleted)
        7f0040000000-7f0080000000 rw-s 00000000 00:2d 99                         /dev/shm/unrelated
        7f1000000000-7f1040000000 rw-s 00000000 00:10 22                         /dev/hugepages/libvirt/qemu/1-nfv/qemu_back_mem.ram-node1.Cd (deleted)
        7f2000000000-7f2040000000 rw-s 00000000 00:01 23                         /memfd:memory-backend-memfd (deleted)
        """
        let backends = [
            MemoryBackendObject(id: "ram-node0", kind: .file, size: 1024 * Self.mib, shared: true, memPath: "/dev/hugepages/libvirt/qemu/1-nfv/"),
            MemoryBackendObject(id: "ram-node1", kind: .file, size: 1024 * Self.mib, shared: true, memPath: "/dev/hugepages/libvirt/qemu/1-nfv"),
            MemoryBackendObject(id: "memdimm0", kind: .memfd, size: 1024 * Self.mib, shared: true),
        ]
        let expected = [
            ExpectedRegion(backendID: "ram-node0", size: 1024 * Self.mib),
            ExpectedRegion(backendID: "ram-node1", size: 1024 * Self.mib),
            ExpectedRegion(backendID: "memdimm0", size: 1024 * Self.mib),
        ]
        let result = try GuestRAMPlan.match(backends: backends, expected: expected, mappings: MemoryMapping.parse(maps: maps))
        #expect(result.map(\.id) == ["ram-node0", "ram-node1", "memdimm0"])
        #expect(result.map(\.mapping.file.inode) == [21, 22, 23])
    }

    @Test func splitMappingsAreOneRegion() throws {
        let maps = """
        7f0000000000-7f0008000000 rw-s 00000000 00:01 7                          /memfd:pc.ram (deleted)
        7f0008000000-7f0010000000 rw-s 08000000 00:01 7                          /memfd:pc.ram (deleted)
        """
        #expect(try plan([Self.memfdRAM], [], maps) == ["pc.ram": 0x7f00_0000_0000])
    }

    @Test func hotPluggedRegionsAreFoundBySize() throws {
        let maps = qemuMaps + "\n7f3000000000-7f3008000000 rw-s 00000000 00:01 3001                       /memfd:memory-backend-memfd (deleted)"
        let expected = [ExpectedRegion(backendID: nil, size: 256 * Self.mib), ExpectedRegion(backendID: "memdimm0", size: 128 * Self.mib)]
        #expect(try plan([Self.memfdRAM], expected, maps) == ["pc.ram": 0x7f2a_4000_0000, "memdimm0": 0x7f30_0000_0000])
    }

    @Test func ivshmemIsNotRAM() throws {
        let shmem = MemoryBackendObject(id: "shmmem-shmem0", kind: .file, size: 4 * Self.mib, shared: true, memPath: "/dev/shm/my shmem0")
        #expect(try plan([Self.memfdRAM, shmem], []) == ["pc.ram": 0x7f2a_4000_0000])
    }

    @Test func unmappableGuests() {
        let guest = [ExpectedRegion(backendID: nil, size: 256 * Self.mib)]
        let anonymous = MemoryBackendObject(id: "pc.ram", kind: .ram, size: 256 * Self.mib, shared: false)
        #expect(throws: UnmappableReason.anonymousRAM(backend: "pc.ram")) { try plan([anonymous], guest) }
        // Plain `-m`: no backend objects and no shared mapping of the size.
        #expect(throws: UnmappableReason.anonymousRAM(backend: nil)) { try plan([], [ExpectedRegion(backendID: nil, size: 384 * Self.mib)]) }
        #expect(throws: UnmappableReason.anonymousRAM(backend: nil)) { try plan([], []) }

        let privateFile = MemoryBackendObject(id: "pc.ram", kind: .file, size: 256 * Self.mib, shared: false, memPath: "/dev/shm/x")
        #expect(throws: UnmappableReason.privateRAM(backend: "pc.ram")) { try plan([privateFile], guest) }

        let elsewhere = MemoryBackendObject(id: "pc.ram", kind: .file, size: 256 * Self.mib, shared: true, memPath: "/var/lib/libvirt/qemu/ram")
        #expect(throws: UnmappableReason.backendNotFound(backend: "pc.ram", size: 256 * Self.mib)) { try plan([elsewhere], guest) }

        let node = MemoryBackendObject(id: "ram-node0", kind: .memfd, size: 256 * Self.mib, shared: true)
        #expect(throws: UnmappableReason.sizeMismatch(backend: "ram-node0", expected: 512 * Self.mib, found: 256 * Self.mib)) {
            try plan([node], [ExpectedRegion(backendID: "ram-node0", size: 512 * Self.mib)])
        }
        #expect(throws: UnmappableReason.sizeMismatch(backend: "pc.ram", expected: 512 * Self.mib, found: 256 * Self.mib)) {
            try plan([Self.memfdRAM], [ExpectedRegion(backendID: nil, size: 512 * Self.mib)])
        }
    }

    func privatePlan(_ backends: [MemoryBackendObject], _ expected: [ExpectedRegion], _ maps: String) throws(UnmappableReason) -> [String: Range<UInt64>] {
        let plan = try GuestRAMPlan.plan(backends: backends, expected: expected, mappings: MemoryMapping.parse(maps: maps), privateMemory: true)
        #expect(plan.allSatisfy { $0.placement == .privateMemory })
        return Dictionary(uniqueKeysWithValues: plan.map { ($0.id, $0.mapping.addresses) })
    }

    /// QEMU with anonymous RAM: the RAM area, its guard page, TCG's translation buffer of the
    /// same size (executable), thread stacks and arenas.
    static let anonymousMaps = """
    55d0caf2b000-55d0cb8d0000 rw-p 00000000 00:00 0                          [heap]
    7f1000000000-7f1010000000 rwxp 00000000 00:00 0
    7f2000000000-7f2010000000 rw-p 00000000 00:00 0
    7f2010000000-7f2010001000 ---p 00000000 00:00 0
    7f3000000000-7f3000800000 rw-p 00000000 00:00 0
    7f3000800000-7f3000801000 ---p 00000000 00:00 0
    7ffd3b5f2000-7ffd3b613000 rw-p 00000000 00:00 0                          [stack]
    """

    @Test func anonymousRAMIsPlannedAsPrivateMemory() throws {
        let ram = MemoryBackendObject(id: "pc.ram", kind: .ram, size: 256 * Self.mib, shared: false)
        let guest = [ExpectedRegion(backendID: nil, size: 256 * Self.mib)]
        let area = 0x7f20_0000_0000..<0x7f20_1000_0000 as Range<UInt64>
        #expect(try privatePlan([ram], guest, Self.anonymousMaps) == ["pc.ram": area])
        // Plain `-m`: no backend objects.
        #expect(try privatePlan([], guest, Self.anonymousMaps) == ["ram0": area])
        // Callers that need shared memory are refused as before.
        #expect(throws: UnmappableReason.anonymousRAM(backend: "pc.ram")) { try plan([ram], guest, Self.anonymousMaps) }
        #expect(throws: UnmappableReason.anonymousRAM(backend: nil)) { try plan([], guest, Self.anonymousMaps) }
        // The entry the public API gives: which addresses of which process.
        let entry = RAMPlanEntry(backendID: "pc.ram", pid: 42, mapping: try #require(MemoryMapping.parse(maps: Self.anonymousMaps).dropFirst(2).first),
                                 placement: .privateMemory)
        #expect(entry.mapping.addresses == area && entry.mapping.file.inode == 0)
    }

    @Test func anAreaSplitByTheKernelIsOneRegion() throws {
        // An madvise of part of the RAM split it in three.
        let maps = """
        7f2000000000-7f2004000000 rw-p 00000000 00:00 0
        7f2004000000-7f2008000000 rw-p 00000000 00:00 0
        7f2008000000-7f2010000000 rw-p 00000000 00:00 0
        7f2010000000-7f2010001000 ---p 00000000 00:00 0
        """
        #expect(try privatePlan([], [ExpectedRegion(backendID: nil, size: 256 * Self.mib)], maps)
                == ["ram0": 0x7f20_0000_0000..<0x7f20_1000_0000])
    }

    @Test func severalAreasOfTheSizeAreRefused() throws {
        let maps = Self.anonymousMaps + "\n7f4000000000-7f4010000000 rw-p 00000000 00:00 0"
        let ram = MemoryBackendObject(id: "pc.ram", kind: .ram, size: 256 * Self.mib, shared: false)
        #expect(throws: UnmappableReason.ambiguousPrivateRAM(backend: "pc.ram", size: 256 * Self.mib, candidates: [0x7f20_0000_0000, 0x7f40_0000_0000])) {
            try privatePlan([ram], [], maps)
        }
        // Two NUMA cells of that size: both areas are RAM, paired in address order.
        let cells = [MemoryBackendObject(id: "ram-node0", kind: .ram, size: 256 * Self.mib, shared: false),
                     MemoryBackendObject(id: "ram-node1", kind: .ram, size: 256 * Self.mib, shared: false)]
        #expect(try privatePlan(cells, [], maps) == ["ram-node0": 0x7f20_0000_0000..<0x7f20_1000_0000, "ram-node1": 0x7f40_0000_0000..<0x7f40_1000_0000])
        // No area of the size at all.
        let big = MemoryBackendObject(id: "pc.ram", kind: .ram, size: 512 * Self.mib, shared: false)
        #expect(throws: UnmappableReason.backendNotFound(backend: "pc.ram", size: 512 * Self.mib)) { try privatePlan([big], [], Self.anonymousMaps) }
    }

    @Test func privateFileMappingsAndMixedGuests() throws {
        // memory_backing_dir with access private: a file under mem-path mapped private; a
        // hot-plugged anonymous DIMM; main memory in a shared memfd.
        let maps = """
        7f1000000000-7f1010000000 rw-p 00000000 fd:01 4242                       /var/lib/libvirt/qemu/ram/1-guest/pc.ram (deleted)
        7f2000000000-7f2008000000 rw-p 00000000 00:00 0
        7f2a40000000-7f2a50000000 rw-s 00000000 00:01 2052                       /memfd:pc.ram (deleted)
        """
        let file = MemoryBackendObject(id: "pc.ram", kind: .file, size: 256 * Self.mib, shared: false, memPath: "/var/lib/libvirt/qemu/ram/1-guest/pc.ram")
        let guest = [ExpectedRegion(backendID: nil, size: 256 * Self.mib)]
        #expect(try privatePlan([file], guest, maps) == ["pc.ram": 0x7f10_0000_0000..<0x7f10_1000_0000])
        #expect(throws: UnmappableReason.privateRAM(backend: "pc.ram")) { try plan([file], guest, maps) }

        let mixed = try GuestRAMPlan.plan(backends: [Self.memfdRAM], expected: guest + [ExpectedRegion(backendID: "memdimm0", size: 128 * Self.mib)],
                                          mappings: MemoryMapping.parse(maps: maps), privateMemory: true)
        #expect(mixed.map(\.id) == ["pc.ram", "memdimm0"])
        #expect(mixed.map(\.placement) == [.shared, .privateMemory])
        #expect(mixed.map(\.mapping.addresses.lowerBound) == [0x7f2a_4000_0000, 0x7f20_0000_0000])
    }

    @Test func reasonsAreReadable() {
        let reasons: [UnmappableReason] = [
            .anonymousRAM(backend: "pc.ram"), .privateRAM(backend: "pc.ram"),
            .noPermission(SystemError(errno: .notPermitted, operation: "open /proc/1/map_files/1-2")), .processGone,
            .remoteConnection(uri: "qemu+ssh://h/system"), .backendNotFound(backend: "pc.ram", size: 4096),
            .sizeMismatch(backend: "ram-node0", expected: 1, found: 2), .failed(SystemError(errno: .tooManyOpenFiles, operation: "open")),
            .ambiguousPrivateRAM(backend: "pc.ram", size: 4096, candidates: [0x1000, 0x3000]),
        ]
        for reason in reasons { #expect(reason.description.count > 20) }
        #expect(UnmappableReason.noPermission(SystemError(errno: .notPermitted, operation: "open x")).description.contains("Operation not permitted"))
    }
}

// # Finding a guest's RAM in its QEMU
//
// Three sources describe a guest's RAM, and the plan pairs them. The domain definition says
// which regions the guest has and their sizes (one per NUMA cell, or one for main memory;
// one per memory device, with the backend id when it gives one). QEMU's command line names
// the memory-backend objects it started with: id, kind (ram, memfd, file), size, `share`,
// `mem-path`. /proc/PID/maps shows where each is mapped. Hot-plugged DIMMs (QMP object-add)
// are in the definition and the maps, not on the command line.
//
// 1. Each expected region is matched to a backend object, by id, else by size.
// 2. A shared backend is matched to a shared file mapping of its size and kind (a memfd for
//    a memfd backend, a file at or under its mem-path), most specific first, so that looser
//    matches cannot take its mapping. That region is opened through map_files.
// 3. A private backend (memory-backend-ram; file or memfd with share=off) is matched to
//    private memory of its size: an anonymous area, or a private mapping of the file. Its
//    pages exist only in QEMU's page tables and are read in place (PrivateGuestRegion).
//    The kernel splits an area when part of it is madvised or mprotected, so a run of
//    adjacent anonymous areas that adds up to the size counts as one. An executable area is
//    never RAM: QEMU maps guest RAM read-write, while TCG's translation buffer, anonymous
//    and as large as 1 GiB, is executable.
// 4. A region without a backend object (plain `-m`, hot-plugged) takes a shared mapping of
//    its size if there is one, else private memory of its size.
//
// Anonymous memory carries no name, only a size, and QEMU has other large anonymous areas
// (malloc arenas, thread stacks, buffers). So the plan never guesses: when QEMU has more
// private areas of a size than the guest has private regions of that size, it refuses
// (`ambiguousPrivateRAM`) rather than read what may be QEMU's own memory. When the counts
// are equal (two NUMA cells of 1 GiB, two such areas), every area is guest RAM; which cell
// is which follows address order, as for equal-sized shared backends, and only the labels
// could be swapped.
//
// Callers that need shared memory (reclaim punches holes in the backend) plan with
// `privateMemory: false`, and a private backend is then an error (`anonymousRAM`,
// `privateRAM`), as it always was.

/// Pairs a guest's expected RAM regions with QEMU's backends and mappings. Pure, for testing.
enum GuestRAMPlan {
    struct Wanted {
        var id: String
        var size: Int
        var backend: MemoryBackendObject?
    }

    /// One region of the plan.
    struct Planned: Equatable {
        var id: String
        var mapping: MemoryMapping
        var placement: RAMPlacement
    }

    /// The plan of a guest whose RAM must be shared memory: a private backend throws
    /// `.anonymousRAM` or `.privateRAM`.
    static func match(backends: [MemoryBackendObject], expected: [ExpectedRegion],
                      mappings: [MemoryMapping]) throws(UnmappableReason) -> [(id: String, mapping: MemoryMapping)] {
        try plan(backends: backends, expected: expected, mappings: mappings, privateMemory: false).map { ($0.id, $0.mapping) }
    }

    /// The plan, in the order of `expected` (of the command line's backends when `expected` is
    /// empty). With `privateMemory`, private backends are planned as private memory;
    /// without it they throw.
    static func plan(backends: [MemoryBackendObject], expected: [ExpectedRegion], mappings: [MemoryMapping],
                     privateMemory: Bool) throws(UnmappableReason) -> [Planned] {
        let wanted = try wantedRegions(backends: backends, expected: expected)
        var sharedWanted: [Wanted] = []
        var privateWanted: [Wanted] = []
        for item in wanted {
            guard let backend = item.backend else {
                sharedWanted.append(item)  // Shared if QEMU has a mapping for it, else private.
                continue
            }
            if !privateMemory && backend.kind == .ram { throw .anonymousRAM(backend: backend.id) }
            if !privateMemory && !backend.shared { throw .privateRAM(backend: backend.id) }
            if backend.shared { sharedWanted.append(item) } else { privateWanted.append(item) }
        }

        var candidates = MemoryMapping.coalesced(mappings).filter(\.isSharedFileMapping)
        var plan: [Planned] = []
        // Backends that name their file first, so that looser matches cannot take their mapping.
        for item in sharedWanted.sorted(by: { specificity($0.backend) > specificity($1.backend) }) {
            guard let found = candidates.firstIndex(where: { $0.length == UInt64(item.size) && fits($0, item.backend) }) else {
                if privateMemory && item.backend == nil {
                    privateWanted.append(item)
                    continue
                }
                // Plain `-m` RAM (no backend objects) is anonymous.
                if backends.isEmpty { throw .anonymousRAM(backend: nil) }
                throw .backendNotFound(backend: item.id, size: item.size)
            }
            let mapping = candidates.remove(at: found)
            candidates.removeAll { $0.file == mapping.file }
            plan.append(Planned(id: item.id, mapping: mapping, placement: .shared))
        }
        plan += try matchPrivate(privateWanted, mappings: mappings)
        let order = Dictionary(uniqueKeysWithValues: wanted.enumerated().map { ($1.id, $0) })
        return plan.sorted { order[$0.id, default: 0] < order[$1.id, default: 0] }
    }

    /// The regions the guest should have, each with its backend object if it has one.
    private static func wantedRegions(backends: [MemoryBackendObject], expected: [ExpectedRegion]) throws(UnmappableReason) -> [Wanted] {
        let isRAM = { (backend: MemoryBackendObject) in !backend.id.hasPrefix("shmmem-") }
        var wanted: [Wanted] = []
        if expected.isEmpty {
            wanted = backends.filter(isRAM).map { Wanted(id: $0.id, size: $0.size, backend: $0) }
        } else {
            var unclaimed = backends.filter(isRAM)
            for (index, region) in expected.enumerated() {
                if let id = region.backendID, let found = unclaimed.firstIndex(where: { $0.id == id }) {
                    let backend = unclaimed.remove(at: found)
                    guard backend.size == region.size else {
                        throw .sizeMismatch(backend: id, expected: region.size, found: backend.size)
                    }
                    wanted.append(Wanted(id: id, size: region.size, backend: backend))
                } else if region.backendID == nil, let found = unclaimed.firstIndex(where: { $0.size == region.size }) {
                    let backend = unclaimed.remove(at: found)
                    wanted.append(Wanted(id: backend.id, size: region.size, backend: backend))
                } else if region.backendID == nil, let other = unclaimed.first, backends.count == expected.count {
                    throw .sizeMismatch(backend: other.id, expected: region.size, found: other.size)
                } else {
                    // Hot-plugged (object-add), so not on the command line.
                    wanted.append(Wanted(id: region.backendID ?? "ram\(index)", size: region.size, backend: nil))
                }
            }
        }
        guard !wanted.isEmpty else { throw .anonymousRAM(backend: nil) }
        return wanted
    }

    /// Private regions to private memory of their size, refusing when the areas of a size
    /// outnumber the regions of that size (see the essay above).
    private static func matchPrivate(_ wanted: [Wanted], mappings: [MemoryMapping]) throws(UnmappableReason) -> [Planned] {
        guard !wanted.isEmpty else { return [] }
        var candidates = privateAreas(mappings, sizes: Set(wanted.map { UInt64($0.size) }))
        var checked = Set<Int>()
        for item in wanted where checked.insert(item.size).inserted {
            let sameSize = wanted.filter { $0.size == item.size }
            let areas = candidates.filter { area in area.length == UInt64(item.size) && sameSize.contains { accepts(area, $0.backend) } }
            if areas.count > sameSize.count {
                throw .ambiguousPrivateRAM(backend: item.id, size: item.size, candidates: areas.map(\.addresses.lowerBound))
            }
        }
        var plan: [Planned] = []
        for item in wanted.sorted(by: { specificity($0.backend) > specificity($1.backend) }) {
            guard let found = candidates.firstIndex(where: { $0.length == UInt64(item.size) && accepts($0, item.backend) }) else {
                throw .backendNotFound(backend: item.id, size: item.size)
            }
            let mapping = candidates.remove(at: found)
            candidates.removeAll { $0.addresses.overlaps(mapping.addresses) }
            plan.append(Planned(id: item.id, mapping: mapping, placement: .privateMemory))
        }
        return plan
    }

    /// Private memory of QEMU that could be a RAM region of one of `sizes`, in address order:
    /// private file mappings (joined where split), and every run of adjacent anonymous
    /// read-write areas whose total is one of the sizes. Never an executable area.
    ///
    /// - Complexity: O(n × k) for n areas and runs of at most k adjacent anonymous areas.
    static func privateAreas(_ mappings: [MemoryMapping], sizes: Set<UInt64>) -> [MemoryMapping] {
        var areas = MemoryMapping.coalesced(mappings).filter {
            $0.isPrivateFileMapping && $0.readable && !$0.executable && sizes.contains($0.length)
        }
        let largest = sizes.max() ?? 0
        var run: [MemoryMapping] = []
        func takeWindows() {
            for first in run.indices {
                var total: UInt64 = 0
                for last in first..<run.count {
                    total += run[last].length
                    if total > largest { break }
                    if sizes.contains(total) {
                        var joined = run[first]
                        joined.addresses = run[first].addresses.lowerBound..<run[last].addresses.upperBound
                        areas.append(joined)
                    }
                }
            }
            run = []
        }
        for mapping in mappings {
            guard mapping.isPrivateAnonymous && mapping.readable && mapping.writable && !mapping.executable else {
                takeWindows()
                continue
            }
            if let last = run.last, last.addresses.upperBound != mapping.addresses.lowerBound { takeWindows() }
            run.append(mapping)
        }
        takeWindows()
        return areas.sorted { $0.addresses.lowerBound < $1.addresses.lowerBound }
    }

    /// Whether private `area` can be the memory of `backend`: anonymous for
    /// memory-backend-ram, the backend's file for file and memfd backends, either without one.
    private static func accepts(_ area: MemoryMapping, _ backend: MemoryBackendObject?) -> Bool {
        switch backend?.kind {
        case .ram?: area.file.inode == 0
        case .memfd?, .file?: area.file.inode != 0 && fits(area, backend)
        default: true
        }
    }

    private static func specificity(_ backend: MemoryBackendObject?) -> Int {
        switch backend?.kind {
        case .file where backend?.memPath != nil: 2
        case .memfd, .ram: 1
        default: 0
        }
    }

    private static func fits(_ mapping: MemoryMapping, _ backend: MemoryBackendObject?) -> Bool {
        guard let backend else { return true }
        switch backend.kind {
        case .memfd:
            return mapping.isMemfd
        case .file:
            guard var memPath = backend.memPath, let path = mapping.path else { return true }
            while memPath.count > 1 && memPath.hasSuffix("/") { memPath.removeLast() }
            // mem-path is the file, or a directory where QEMU made (and unlinked) one.
            return path == memPath || path.hasPrefix(memPath + "/")
        default:
            return true
        }
    }
}

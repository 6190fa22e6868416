// The benchmark's guests: one memfd each, mapped MAP_SHARED and filled by this process as
// QEMU maps a guest's RAM, then opened the way the daemon opens a guest's backend (a
// `GuestRegion` through /proc/self/map_files, residency from mincore on an untouched mapping,
// contents by pread). A memfd is not bounded by /dev/shm's size (half of RAM), only by RAM.
import BenchmarkSupport
import CLinux
import Glibc
import GuestMemory
import SamepageCore

/// What each guest page holds, by runs of 16 pages (64 KiB), as clones of one template that
/// then went their own ways:
///
/// - a hole (never written, not resident) for 1 run in 8, chosen per guest;
/// - of the rest, by the run's place in the template (the same in every guest):
///   2 in 8 zero pages; 3 in 8 *common* pages, the same content at the same offset in every
///   guest (the OS image: each content has one copy per guest that has it); 1 in 8 *role*
///   pages, shared by the guests of one of 4 roles (`guest % 4`); 1 in 8 *near-duplicates*,
///   a common page with one word changed per guest (unique, and a hash that finds nothing);
///   1 in 8 unique pages.
///
/// Content ids: 0 zero; `1 + page` common; `1 << 40 | role << 32 | page` role;
/// `2 << 40 | guest << 32 | page` near-duplicate; `3 << 40 | guest << 32 | page` unique.
enum Template {
    static let runPages = 16
    static let roles = 4

    static func mix(_ x: UInt64) -> UInt64 {
        var rng = SplitMix64(state: x)
        return rng.next()
    }

    /// The content id of page `page` of guest `guest`; nil for a hole.
    static func content(guest: Int, page: Int) -> UInt64? {
        let run = UInt64(page / runPages)
        if mix(UInt64(guest + 1) << 40 ^ run) % 8 == 0 { return nil }
        let g = UInt64(guest), k = UInt64(page)
        switch mix(run) % 8 {
        case 0, 1: return 0
        case 2, 3, 4: return 1 + k
        case 5: return 1 << 40 | UInt64(guest % roles) << 32 | k
        case 6: return 2 << 40 | g << 32 | k
        default: return 3 << 40 | g << 32 | k
        }
    }

    /// Writes content `id` into `page`.
    static func fill(_ page: UnsafeMutableRawPointer, id: UInt64) {
        guard id >> 40 == 2 else { fillPage(page, id: id); return }
        let g = (id >> 32) & 0xFF, k = id & 0xFFFF_FFFF
        fillPage(page, id: 1 + k)
        let words = page.assumingMemoryBound(to: UInt64.self)
        words[Int((k &+ g) % UInt64(pageSize / 8))] ^= (g + 1) &* 0x9E37_79B9_7F4A_7C15
    }
}

/// What the engine must converge to, worked out from the template.
struct Expected: Equatable, Codable, CustomStringConvertible {
    var shared = 0, sharing = 0, zero = 0
    /// Pages that are not holes.
    var resident = 0

    /// Under `max_page_sharing`, a content with n copies needs ceil(n / cap) nodes; a last
    /// node of one page is no node.
    init(guests: Int, pagesPerGuest: Int, maxPageSharing cap: Int) {
        var common = [Int](repeating: 0, count: pagesPerGuest)
        var role = [Int](repeating: 0, count: pagesPerGuest * Template.roles)
        for g in 0..<guests {
            for k in 0..<pagesPerGuest {
                guard let id = Template.content(guest: g, page: k) else { continue }
                resident += 1
                switch id >> 40 {
                case 0 where id == 0: zero += 1
                case 0: common[k] += 1
                case 1: role[(g % Template.roles) * pagesPerGuest + k] += 1
                default: break
                }
            }
        }
        for n in common + role where n >= 2 {
            let full = n / cap, rest = n % cap
            shared += full + (rest >= 2 ? 1 : 0)
            sharing += full * (cap - 1) + (rest >= 2 ? rest - 1 : 0)
        }
    }

    init(_ c: Counters, resident: Int) {
        (shared, sharing, zero, self.resident) = (c.pagesShared, c.pagesSharing, c.zeroPages, resident)
    }

    var description: String { "shared \(shared) / sharing \(sharing) / zero \(zero)" }
}

/// The guests' RAM: one region each, filled from the template.
struct Fleet {
    let regions: [GuestRegion]

    /// Creates `guests` memfds of `pagesPerGuest` pages each, fills them, and opens each as
    /// the daemon would; this process's own writable mapping is gone afterwards.
    init(guests: Int, pagesPerGuest: Int) throws {
        let bytes = pagesPerGuest * pageSize
        var regions: [GuestRegion] = []
        let pid = getpid()
        for g in 0..<guests {
            let fd = samepage_memfd_create("samepage-scale-\(g)", 1 /* MFD_CLOEXEC */)
            precondition(fd >= 0, "memfd_create: \(String(cString: strerror(errno)))")
            precondition(ftruncate(fd, off_t(bytes)) == 0, "ftruncate: \(String(cString: strerror(errno)))")
            let base = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)!
            precondition(base != MAP_FAILED, "mmap: \(String(cString: strerror(errno)))")
            close(fd)
            for k in 0..<pagesPerGuest {
                if let id = Template.content(guest: g, page: k) { Template.fill(base + k * pageSize, id: id) }
            }
            let address = UInt64(UInt(bitPattern: base))
            let mapping = try MemoryMapping.read(pid: pid).first { $0.addresses.lowerBound == address }!
            regions.append(try GuestRegion(mapping: mapping, of: pid, backendID: "pc.ram"))
            munmap(base, bytes)
        }
        self.regions = regions
    }

    /// The guests' names, in the order `list` shows them (by name).
    static func name(_ g: Int) -> String { String(format: "guest-%03d", g) }
    static func uuid(_ g: Int) -> String { String(format: "00000000-0000-4000-8000-%012d", g) }
}

import GuestMemory
import SamepageCore

/// Pages of one guest seen zero once, waiting for a second look of the agent's own.
///
/// The engine confirms a zero page at its next visit, a full scan later: with the default
/// scan-time target that is minutes, and a new guest's zero pages would come back late. So a
/// page first seen zero is looked at again after ``delay`` (a `pread` of that page alone), and
/// found zero again it is confirmed then; the pause verifies it once more before any punch, as
/// every confirmed page. Bounded: at most ``limitPerRegion`` pages wait per region.
struct ZeroCandidates {
    /// How long after its first sighting a page is looked at again.
    static let delay: Duration = .seconds(20)
    /// Most pages waiting per region.
    static let limitPerRegion = 1 << 18
    /// Most pages looked at again per call of ``due(at:limit:)``.
    static let batch = 4096

    /// Per region, the pages in the order they were seen, with when.
    private var waiting: [Int: [(page: Int, seen: ContinuousClock.Instant)]] = [:]
    private var cursor: [Int: Int] = [:]

    /// Pages waiting over all regions. O(regions).
    var count: Int { waiting.reduce(0) { $0 + $1.value.count - (cursor[$1.key] ?? 0) } }

    /// Files a page seen zero for the first time at `now`.
    mutating func add(page: Int, region: Int, at now: ContinuousClock.Instant) {
        var pages = waiting[region, default: []]
        guard pages.count - (cursor[region] ?? 0) < Self.limitPerRegion else { return }
        pages.append((page, now))
        waiting[region] = pages
    }

    /// Takes the pages whose second look is due at `now`, at most `limit`, region by region.
    mutating func due(at now: ContinuousClock.Instant, limit: Int = batch) -> [(region: Int, pages: [Int])] {
        var taken: [(region: Int, pages: [Int])] = []
        var left = limit
        for region in waiting.keys.sorted() where left > 0 {
            let pages = waiting[region]!
            var index = cursor[region] ?? 0
            var due: [Int] = []
            while index < pages.count, left > 0, now - pages[index].seen >= Self.delay {
                due.append(pages[index].page)
                index += 1
                left -= 1
            }
            if index == pages.count {
                waiting[region] = nil
                cursor[region] = nil
            } else if index > pages.count / 2 {
                // Compact now and then, not at every call.
                waiting[region] = Array(pages[index...])
                cursor[region] = nil
            } else {
                cursor[region] = index
            }
            if !due.isEmpty { taken.append((region, due)) }
        }
        return taken
    }

    /// Forgets every page (the guest's backends are closed, or its mode does not reclaim).
    mutating func removeAll() {
        waiting = [:]
        cursor = [:]
    }
}

extension ZeroCandidates {
    /// The second look: candidates seen zero at least ``delay`` ago are read
    /// again (a `pread` each, of resident pages only: a page that is a hole already is left
    /// alone) and, zero still, wait for a pause. At most ``batch`` per call.
    static func lookAgain(_ guests: some Sequence<TrackedGuest>) {
        let now = ContinuousClock.now
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: pageSize, alignment: pageSize)
        defer { page.deallocate() }
        let resident = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: 1)
        defer { resident.deallocate() }
        var budget = batch
        for guest in guests where budget > 0 && guest.reclaimState.candidates.count > 0 {
            for (region, pages) in guest.reclaimState.candidates.due(at: now, limit: budget) where region < guest.regions.count {
                budget -= pages.count
                let backend = guest.regions[region]
                for index in pages {
                    guard (try? backend.residency(of: index..<(index + 1), into: resident)) != nil, resident[0] & 1 != 0,
                        (try? backend.read(index..<(index + 1), into: page)) != nil,
                        isZeroPage(UnsafeRawPointer(page.baseAddress!))
                    else { continue }
                    guest.reclaimState.addPending(page: index, region: region, at: now)
                }
            }
        }
    }
}

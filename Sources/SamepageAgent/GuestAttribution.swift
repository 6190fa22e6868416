import Foundation
import GuestMemory
import SamepageCore
import SamepageModel

/// Each guest's fairly attributed sharing and, on hugetlbfs, how its zero pages fall on its
/// huge pages: figures that walk every rmap item (`Engine.attributedSharing(of:)`,
/// `Engine.hugePageZeroes(of:pagesPerHugePage:)`), so they are worked out again at most every
/// ``interval`` on the agent's thread, not at each publish (four a second), and published as
/// they were last worked out.
struct GuestAttribution {
    /// One guest's figures.
    struct Figures: Equatable {
        /// Attributed sharing, in pages (fractions of a page: see `attributedSharing`).
        var sharingPages = 0.0
        /// Over its hugetlbfs regions; nil without one.
        var hugePageZeroes: HugePageZeroes?
    }

    /// How often the figures are worked out again at most.
    static let interval: Duration = .seconds(5)

    private(set) var figures: [UUID: Figures] = [:]
    private var computedAt: ContinuousClock.Instant?

    /// Works the figures out again if ``interval`` has passed since the last time (or
    /// never); returns whether it did.
    @discardableResult
    mutating func refresh(_ guests: [UUID: TrackedGuest], engine: Engine, at now: ContinuousClock.Instant) -> Bool {
        if let computedAt, now - computedAt < Self.interval { return false }
        computedAt = now
        let mapped = guests.filter { $0.value.mapped }
        let ids = Array(mapped.keys)
        let shares = engine.attributedSharing(of: ids.map { mapped[$0]!.slots })
        var result: [UUID: Figures] = [:]
        for (i, id) in ids.enumerated() {
            result[id] = Figures(sharingPages: shares[i], hugePageZeroes: Self.hugePageZeroes(of: mapped[id]!, engine: engine))
        }
        figures = result
        return true
    }

    /// The figures of the guest with `uuid`; none for a guest not mapped at the last refresh.
    func of(_ uuid: UUID) -> Figures { figures[uuid] ?? Figures() }

    /// Its hugetlbfs regions' zero pages by huge page, summed (regions of other huge page
    /// sizes than the first are left out of the sum, which holds one size).
    private static func hugePageZeroes(of guest: TrackedGuest, engine: Engine) -> HugePageZeroes? {
        var total: HugePageZeroes?
        // Shared regions come first among the guest's slots, in the order of `regions`.
        for (region, slot) in zip(guest.regions, guest.slots) {
            guard case .hugetlbfs(let size) = region.kind, size > pageSize else { continue }
            guard let zeroes = engine.hugePageZeroes(of: slot, pagesPerHugePage: size / pageSize) else { continue }
            if total == nil {
                total = zeroes
            } else if total!.pagesPerHugePage == zeroes.pagesPerHugePage {
                total!.accumulate(zeroes)
            }
        }
        return total
    }
}

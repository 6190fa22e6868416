import Foundation
import GuestMemory
import Logging
import SamepageCore
import SamepageModel

/// Reclaimed pages after their pause: those the guest touched again (refaults), counted and
/// never reclaimed again while the guest runs.
///
/// No state of its own (each guest's held and hot pages are its ``ReclaimState``'s): a
/// namespace for the one pass, apart from the pause that made the holes.
enum RefaultWatch {
    /// Every 5 s, per guest: reclaimed pages that are resident again were touched by the guest
    /// (a read or write fault allocates a hole). They are counted, never reclaimed again while
    /// the guest runs, and a guest that refaults much of what was reclaimed is backed off.
    static func check(_ guests: some Sequence<TrackedGuest>, engine: Engine, logger: Logger) {
        let now = ContinuousClock.now
        let vector = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: 512)
        defer { vector.deallocate() }
        for guest in guests where !guest.reclaimState.held.isEmpty && now >= guest.reclaimState.nextRefaultCheck {
            guest.reclaimState.nextRefaultCheck = now + .seconds(5)
            var refaults = 0
            for (region, set) in guest.reclaimState.held where region < guest.regions.count {
                var held = set
                for range in set.ranges {
                    var start = range.lowerBound
                    while start < range.upperBound {
                        let window = start..<min(range.upperBound, start + 512)
                        guard (try? guest.regions[region].residency(of: window, into: vector)) != nil else { break }
                        for page in window where vector[page - window.lowerBound] & 1 != 0 {
                            held.remove(page)
                            engine.backOff(slot: guest.slots[region], page: page)
                            guest.reclaimState.hot[region, default: PageSet(pageCount: set.pageCount)].insert(page..<(page + 1))
                            refaults += 1
                        }
                        start = window.upperBound
                    }
                }
                guest.reclaimState.held[region] = held.isEmpty ? nil : held
            }
            guest.reclaimState.status.zeroPagesRefaulted += refaults
            if refaults > 64 && refaults * 2 > guest.reclaimState.reclaimedSinceRefaultCheck {
                guest.reclaimState.backoffUntil = now + .seconds(60)
                logger.warning("guest \(guest.identity.name): \(refaults) reclaimed pages refaulted in 5 s; backing off reclaim for 60 s")
            }
            guest.reclaimState.reclaimedSinceRefaultCheck = 0
        }
    }
}

/// `run unmerge`: reclaimed ranges are allocated again, 64 MiB per loop, so operators get
/// their memory committed back; progress shows as `pages_to_repopulate`.
///
/// Its own room: whether it is under way is read by the reclaimer (no pause meanwhile) and
/// the status, and changed here only.
struct Repopulation {
    let logger: Logger
    /// Reclaimed ranges are being allocated again.
    private(set) var active = false

    /// Pages allocated again per loop at most (64 MiB of 4 KiB pages).
    static let pagesPerStep = 16_384

    /// Starts allocating every guest's reclaimed ranges again; their pending pages are dropped.
    mutating func start(_ guests: some Collection<TrackedGuest>) {
        active = true
        for guest in guests { guest.reclaimState.forgetPending() }
        logger.notice("run unmerge: allocating \(guests.reduce(0) { $0 + $1.reclaimState.heldPages }) reclaimed pages again")
    }

    /// Allocates up to ``pagesPerStep`` reclaimed pages again; ends when none is left.
    ///
    /// - Returns: Whether it is (or was, until this step) under way: the progress is published.
    mutating func step(_ guests: some Collection<TrackedGuest>) -> Bool {
        guard active else { return false }
        var budget = Self.pagesPerStep
        for guest in guests where budget > 0 {
            for (region, set) in guest.reclaimState.held where budget > 0 && region < guest.regions.count {
                var held = set
                for range in set.ranges where budget > 0 {
                    let part = range.lowerBound..<min(range.upperBound, range.lowerBound + budget)
                    do {
                        try guest.regions[region].repopulate(part)
                    } catch {
                        logger.error("guest \(guest.identity.name): repopulating \(part): \(error)")
                        budget = 0
                        break
                    }
                    for page in part { held.remove(page) }
                    budget -= part.count
                }
                guest.reclaimState.held[region] = held.isEmpty ? nil : held
            }
        }
        if guests.allSatisfy({ $0.reclaimState.held.isEmpty }) {
            active = false
            logger.notice("run unmerge: every reclaimed range is allocated again")
        }
        return true
    }
}

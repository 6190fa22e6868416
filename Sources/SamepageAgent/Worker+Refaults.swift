import Foundation
import GuestMemory
import Libvirt
import Logging
import SamepageCore
import SamepageModel
import Synchronization

/// After the pauses: reclaimed pages the guest touched again, and `run unmerge`, which
/// allocates reclaimed ranges again.
extension Worker {
    /// Every 5 s, per guest: reclaimed pages that are resident again were touched by the guest
    /// (a read or write fault allocates a hole). They are counted, never reclaimed again while
    /// the guest runs, and a guest that refaults much of what was reclaimed is backed off.
    func checkRefaults() {
        let now = ContinuousClock.now
        let vector = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: 512)
        defer { vector.deallocate() }
        for guest in guests.values where !guest.reclaimState.held.isEmpty && now >= guest.reclaimState.nextRefaultCheck {
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

    /// `run unmerge`: reclaimed ranges are allocated again, 64 MiB per loop, so operators get
    /// their memory committed back; progress shows as `pages_to_repopulate`.
    func startRepopulating() {
        repopulating = true
        for guest in guests.values {
            guest.reclaimState.pending = [:]
            guest.reclaimState.oldestPending = nil
        }
        logger.notice("run unmerge: allocating \(guests.values.reduce(0) { $0 + $1.reclaimState.heldPages }) reclaimed pages again")
    }

    func repopulateStep() {
        guard repopulating else { return }
        var budget = 16_384
        for guest in guests.values where budget > 0 {
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
        if guests.values.allSatisfy({ $0.reclaimState.held.isEmpty }) {
            repopulating = false
            logger.notice("run unmerge: every reclaimed range is allocated again")
        }
        publish()
    }

}


/// The counts the engine keeps as it scans, once for the whole engine and once per slot.
///
/// ksm.c keeps its counters globally (`ksm_pages_shared`, `ksm_pages_sharing`, …); Samepage
/// also reports them per guest, so every count is kept twice, and an event that changes one
/// must change both or the two drift apart. Nothing changes a tally field by hand: an event is
/// recorded with ``Engine/count(_:in:)``, which applies it to the engine's tally and to the
/// slot's in one call. The invariant checks (Engine+Invariants.swift) hold the engine's page
/// counts to the sum of the slots' and both to a walk of every rmap item.
///
/// Two counts are not events of both: full scans complete for the scan list and for one slot
/// at different moments, and a slot's `owned` (stable nodes whose representative it holds) has
/// no global twin, the global one being the number of live stable nodes.
///
/// Cost: a handful of integer additions; after inlining, ``record(_:)`` on a constant event is
/// one add. Engine and Slot are internal to this module, so the optimizer sees every call site
/// and `@inline(__always)` is all it needs (no `@inlinable`: nothing outside calls it).
struct Tally: Equatable {
    /// Pages read and classified (`pages_scanned`). Only ever grows.
    var pagesScanned = 0
    /// Pages passed over by smart scan (`pages_skipped`). Only ever grows.
    var pagesSkipped = 0
    /// Promotions refused by `max_kernel_pages` or a slot's `max_pages`. Only ever grows.
    var mergesRefused = 0
    /// Completed full scans: of the whole scan list for the engine, over the slot for a slot.
    var fullScans = 0
    /// Pages with an rmap item (ksm.c's `ksm_rmap_items`).
    var tracked = 0
    /// Stable-node memberships: every page merged into a node, its representative included.
    var members = 0
    /// Pages filed in the unstable tree (`pages_unshared`).
    var unshared = 0
    /// Pages found zero on two visits in a row (`zero_pages`).
    var zeroConfirmed = 0

    init() {}

    /// What happened to one page, as the counts see it.
    enum Event {
        /// A page was read and classified.
        case pageScanned
        /// Smart scan passed a page over.
        case pageSkipped
        /// A cap refused a merge.
        case mergeRefused
        /// A page got an rmap item (first visit, or a back-off asked for from outside).
        case itemAdded
        /// A page's rmap item was dropped (the page went away, or its slot is leaving).
        case itemDropped
        /// A page joined a stable node (or founded one with its pair).
        case joinedStable
        /// A page left its stable node.
        case leftStable
        /// A page was filed in the unstable tree.
        case filedUnstable
        /// A page left the unstable tree (changed, skipped, promoted, or the tree was rebuilt).
        case leftUnstable
        /// A zero page stayed zero over a second visit.
        case zeroConfirmed
        /// A confirmed zero page is no longer known to be zero.
        case zeroUnconfirmed
    }

    @inline(__always)
    mutating func record(_ event: Event) {
        switch event {
        case .pageScanned: pagesScanned += 1
        case .pageSkipped: pagesSkipped += 1
        case .mergeRefused: mergesRefused += 1
        case .itemAdded: tracked += 1
        case .itemDropped: tracked -= 1
        case .joinedStable: members += 1
        case .leftStable: members -= 1
        case .filedUnstable: unshared += 1
        case .leftUnstable: unshared -= 1
        case .zeroConfirmed: zeroConfirmed += 1
        case .zeroUnconfirmed: zeroConfirmed -= 1
        }
    }

    /// `run = 2`: every page is forgotten; what was scanned, skipped and refused is kept.
    mutating func dropPages() {
        tracked = 0
        members = 0
        unshared = 0
        zeroConfirmed = 0
    }

    /// Pages tracked but in neither tree nor zero: changing too fast, new, or waiting.
    var volatile: Int { tracked - members - unshared - zeroConfirmed }

    /// The kernel-named counters, `pagesShared` being the stable nodes attributed here: all
    /// live nodes for the engine, the nodes whose representative it holds for a slot.
    func counters(pagesShared: Int) -> Counters {
        var c = Counters()
        c.pagesShared = pagesShared
        c.pagesSharing = members - pagesShared
        c.pagesUnshared = unshared
        c.pagesVolatile = volatile
        c.zeroPages = zeroConfirmed
        c.fullScans = fullScans
        c.pagesScanned = pagesScanned
        c.pagesSkipped = pagesSkipped
        c.mergesRefused = mergesRefused
        return c
    }
}

extension Engine {
    /// Records one event of `slot` in the engine's tally and the slot's, in one call.
    @inline(__always)
    func count(_ event: Tally.Event, in slot: Slot) {
        tally.record(event)
        slot.tally.record(event)
    }
}

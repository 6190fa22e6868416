/// KSM's scanning and merging loop over guest memory, as a pure library.
///
/// A port of the loop of Linux `mm/ksm.c`: slots on a circular scan list, a cursor that
/// resumes where the last batch stopped, a stable tree of merged contents that is looked up
/// first, and an unstable tree of pages unchanged since the previous pass that is rebuilt from
/// empty at every full scan. A match in the unstable tree promotes the pair to the stable tree.
///
/// Guest pages are not write-protected, so both trees are keyed by a stored 64-bit content
/// hash; a hash only finds candidates and every merge is confirmed by a full compare of the
/// two pages. Zero pages are their own class, as with the kernel's `use_zero_pages`: never a
/// stable node, counted in `zero_pages`, and reported in the batch's
/// ``BatchReport/confirmedZeroPages`` once they stayed zero over two visits.
///
/// Everything a batch has to tell leaves through its ``BatchReport``, returned when the batch
/// is done: the engine calls nothing of its caller's in the middle of a batch.
///
/// The engine is not thread-safe: drive it from one thread (the daemon gives it its own).
/// All reads of guest memory go through each slot's ``PageSource``, in batches.
///
/// The type is cut by aspect, one file each: this one holds its state, its knobs and the
/// registry of slots (ksm.c's `mm_slot` list); `Engine+Scan.swift` the cursor and the batch
/// loop (`ksm_do_scan`, `scan_get_next_rmap_item`); `Engine+Merge.swift` what happens to one
/// page (`cmp_and_merge_page`, the stable and unstable lookups, the confirming compares);
/// `Engine+Report.swift` the counters and other read-outs (the counts themselves are kept in
/// `Tally.swift`, globally and per slot in one call); `Engine+Invariants.swift` the
/// checks the tests run after every batch. The stored state is internal, not private, so those
/// files can reach it; nothing outside the engine's files touches it.
public final class Engine {
    /// The knobs; validated when set through ``setTunables(_:)``.
    public private(set) var tunables: Tunables

    /// Stop, merge, or unmerge everything (`run` 0/1/2). Setting `.unmerge` drops all
    /// tracking at once and leaves the engine stopped.
    public var run: RunMode = .merge {
        didSet { if run == .unmerge { unmergeAll() } }
    }

    let hasher: PageHasher
    let zeroChecksum: UInt32

    // Slots by index; an index is reused only after the unstable tree was reset, so stale
    // unstable entries can never point into a different slot's pages.
    var slots: [Slot?] = []
    var generations: [UInt32] = []
    var freeIndexes: [Int] = []
    var quarantinedIndexes: [Int] = []

    // The scan list and cursor (ksm.c's `ksm_scan`).
    var scanList: [Int] = []
    var cursorPosition = 0
    var cursorPage = 0
    var atHead = true
    var pagesVisitedThisRound = 0

    var stable = StableTree()
    var unstable = UnstableTree()
    var pendingDissolve: [UInt32] = []

    /// The engine's counts, each slot's share in its own tally, both updated in one call
    /// (``count(_:in:)``); the kernel-named counters derive from them.
    var tally = Tally()

    var nextPrivateGroup: UInt32 = 1 << 31
    var namedGroups: [String: TrustGroup] = [:]
    var failures: [SlotFailure] = []
    /// This batch's confirmed zero pages; handed out in its report (see
    /// ``BatchReport/confirmedZeroPages`` for who owns the storage).
    var confirmedZeroPages: [SlotPage] = []
    /// The pages of this batch seen zero for the first time (``BatchReport/newZeroPages``).
    var newZeroPages: [SlotPage] = []

    // Scratch space, allocated once.
    static let readBatchPages = 32
    let readBuffer: UnsafeMutableRawPointer
    let compareBuffer: UnsafeMutableRawPointer
    let residency: UnsafeMutableBufferPointer<UInt8>
    var pageList: [Int] = []

    public init(tunables: Tunables = Tunables(), hasher: PageHasher = .xxh3) throws(TunableError) {
        try tunables.validate()
        self.tunables = tunables
        self.hasher = hasher
        readBuffer = .allocate(byteCount: Engine.readBatchPages * pageSize, alignment: pageSize)
        compareBuffer = .allocate(byteCount: pageSize, alignment: pageSize)
        residency = .allocate(capacity: RmapChunk.pages)
        compareBuffer.initializeMemory(as: UInt8.self, repeating: 0, count: pageSize)
        zeroChecksum = UnstableTree.checksum(of: hasher.hash(compareBuffer))
        pageList.reserveCapacity(RmapChunk.pages)
    }

    deinit {
        readBuffer.deallocate()
        compareBuffer.deallocate()
        residency.deallocate()
    }

    /// Changes the knobs between batches.
    public func setTunables(_ new: Tunables) throws(TunableError) {
        try new.validate()
        tunables = new
    }

    // MARK: Trust groups

    /// A group of its own, for a guest with no configured trust group.
    public func privateTrustGroup() -> TrustGroup {
        defer { nextPrivateGroup &+= 1 }
        return TrustGroup(rawValue: nextPrivateGroup)
    }

    /// The group with this name; the same name always gives the same group.
    public func trustGroup(named name: String) -> TrustGroup {
        if let group = namedGroups[name] { return group }
        let group = TrustGroup(rawValue: UInt32(namedGroups.count + 1))
        namedGroups[name] = group
        return group
    }

    // MARK: Slots

    /// Adds a region to the scan list, just behind the cursor (as ksm.c does, to let the
    /// area settle a little before it is scanned). Returns nil when 65,535 slots exist.
    public func addSlot(_ source: any PageSource, options: SlotOptions) -> SlotID? {
        let index: Int
        if let free = freeIndexes.popLast() {
            index = free
        } else {
            guard slots.count < 0xFFFF else { return nil }
            index = slots.count
            slots.append(nil)
            generations.append(0)
        }
        generations[index] &+= 1
        let id = SlotID(rawValue: UInt64(generations[index]) << 16 | UInt64(index))
        slots[index] = Slot(id: id, source: source, options: options)
        if atHead {
            scanList.append(index)
        } else {
            scanList.insert(index, at: cursorPosition)
            cursorPosition += 1
        }
        return id
    }

    /// The slots on the scan list, in scan order.
    public var slotIDs: [SlotID] { scanList.map { slots[$0]!.id } }

    func slot(_ id: SlotID) -> Slot? {
        guard id.index < slots.count, let slot = slots[id.index], slot.id == id else { return nil }
        return slot
    }

    /// The options a slot was added with.
    public func options(for id: SlotID) -> SlotOptions? { slot(id)?.options }

    /// Changes a slot's options (a policy reload). A slot that stops merging, or moves to
    /// another trust group, leaves the trees at once.
    public func setOptions(_ options: SlotOptions, for id: SlotID) {
        guard let slot = slot(id) else { return }
        let leavesTrees = options.trustGroup != slot.options.trustGroup || (slot.options.merging && !options.merging)
        if leavesTrees { forgetAll(of: slot) }
        slot.options = options
    }

    /// Removes a slot at any moment, mid-scan included: its pages leave both trees and every
    /// counter, and its tracking memory is freed.
    public func removeSlot(_ id: SlotID) {
        guard let slot = slot(id) else { return }
        forgetAll(of: slot)
        let index = id.index
        slots[index] = nil
        quarantinedIndexes.append(index)
        if let position = scanList.firstIndex(of: index) {
            scanList.remove(at: position)
            if !atHead {
                if position < cursorPosition {
                    cursorPosition -= 1
                } else if position == cursorPosition {
                    cursorPage = 0
                }
            }
        }
    }

    func forgetAll(of slot: Slot) {
        for (c, chunk) in slot.chunks.enumerated() {
            guard let chunk else { continue }
            for i in 0..<RmapChunk.pages where chunk.words[i] != 0 {
                forget(slot, chunk: c, page: c << RmapChunk.shift | i)
            }
        }
        flushDissolve()
        slot.freeChunks()
    }

    // MARK: Unmerge

    /// `run = 2`: drops every rmap item and both trees. Scan counters are kept.
    func unmergeAll() {
        for case let slot? in slots {
            slot.freeChunks()
            slot.tally.dropPages()
            slot.owned = 0
        }
        stable.removeAll()
        unstable.reset()
        pendingDissolve = []
        tally.dropPages()
        atHead = true
    }
}

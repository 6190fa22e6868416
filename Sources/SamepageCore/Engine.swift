/// What one batch did.
public struct BatchReport: Sendable {
    /// Pages read and classified in this batch.
    public var pagesScanned = 0
    /// Full scans completed during this batch.
    public var fullScansCompleted = 0
    /// Slots the engine dropped because their memory could no longer be read.
    public var failures: [SlotFailure] = []
    public init() {}
}

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
/// stable node, counted in `zero_pages`, and handed to ``reclaimHook`` once they stayed zero
/// over two visits.
///
/// The engine is not thread-safe: drive it from one thread (the daemon gives it its own).
/// All reads of guest memory go through each slot's ``PageSource``, in batches.
public final class Engine {
    /// The knobs; validated when set through ``setTunables(_:)``.
    public private(set) var tunables: Tunables

    /// Stop, merge, or unmerge everything (`run` 0/1/2). Setting `.unmerge` drops all
    /// tracking at once and leaves the engine stopped.
    public var run: RunMode = .merge {
        didSet { if run == .unmerge { unmergeAll() } }
    }

    /// Called once for each page that was found all zero on two visits in a row: the reclaim
    /// candidates. The default does nothing; reclaim is the agent's business.
    public var reclaimHook: ((SlotID, Int) -> Void)?

    let hasher: PageHasher
    private let zeroChecksum: UInt32

    // Slots by index; an index is reused only after the unstable tree was reset, so stale
    // unstable entries can never point into a different slot's pages.
    private var slots: [Slot?] = []
    private var generations: [UInt32] = []
    private var freeIndexes: [Int] = []
    private var quarantinedIndexes: [Int] = []

    // The scan list and cursor (ksm.c's `ksm_scan`).
    private var scanList: [Int] = []
    private var cursorPosition = 0
    private var cursorPage = 0
    private var atHead = true
    private var pagesVisitedThisRound = 0

    private var stable = StableTree()
    private var unstable = UnstableTree()
    private var pendingDissolve: [UInt32] = []

    // Global counters; the kernel-named ones derive from these.
    private var fullScans = 0
    private var pagesScanned = 0
    private var pagesSkipped = 0
    private var mergesRefused = 0
    private var tracked = 0
    private var totalMembers = 0
    private var unshared = 0
    private var zeroConfirmed = 0

    private var nextPrivateGroup: UInt32 = 1 << 31
    private var namedGroups: [String: TrustGroup] = [:]
    private var failures: [SlotFailure] = []

    // Scratch space, allocated once.
    static let readBatchPages = 32
    private let readBuffer: UnsafeMutableRawPointer
    private let compareBuffer: UnsafeMutableRawPointer
    private let residency: UnsafeMutableBufferPointer<UInt8>
    private var pageList: [Int] = []

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

    private func slot(_ id: SlotID) -> Slot? {
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

    private func forgetAll(of slot: Slot) {
        for (c, chunk) in slot.chunks.enumerated() {
            guard let chunk else { continue }
            for i in 0..<RmapChunk.pages where chunk.words[i] != 0 {
                forget(slot, chunk: c, page: c << RmapChunk.shift | i)
            }
        }
        flushDissolve()
        slot.freeChunks()
    }

    // MARK: Counters

    /// The global counters, with the kernel's names.
    public var counters: Counters {
        var c = Counters()
        c.pagesShared = stable.liveCount
        c.pagesSharing = totalMembers - stable.liveCount
        c.pagesUnshared = unshared
        c.pagesVolatile = tracked - totalMembers - unshared - zeroConfirmed
        c.zeroPages = zeroConfirmed
        c.fullScans = fullScans
        c.pagesScanned = pagesScanned
        c.pagesSkipped = pagesSkipped
        c.mergesRefused = mergesRefused
        return c
    }

    /// One slot's counters; nil for a slot that is gone.
    public func counters(for id: SlotID) -> Counters? { slot(id)?.counters }

    /// Stable nodes whose representative left and whose next member has not been visited
    /// yet. Per-slot `pages_shared` add up to the global one minus this.
    public var vacantNodes: Int { stable.nodes.reduce(0) { $0 + ($1.isLive && $1.isVacant ? 1 : 0) } }

    /// Pages with an rmap item (ksm.c's `ksm_rmap_items`).
    public var rmapItems: Int { tracked }

    /// Bytes the engine holds for tracking: rmap chunks, tree nodes and tables, slot arrays.
    public var trackingBytes: Int {
        var bytes = stable.trackingBytes + unstable.trackingBytes
        for case let slot? in slots {
            bytes += slot.chunks.capacity * MemoryLayout<RmapChunk?>.stride + slot.chunkTracked.capacity * 2
            for case .some in slot.chunks { bytes += RmapChunk.byteCount }
        }
        return bytes
    }

    /// For each pair of slots, how many stable nodes have members in both; the diagonal holds
    /// each slot's own stable-node memberships. Computed by one walk over all rmap items.
    public func sharingMatrix() -> [SlotID: [SlotID: Int]] {
        let ids = Dictionary(uniqueKeysWithValues: scanList.map { (slots[$0]!.id, slots[$0]!.id) })
        return sharingMatrix(groupedBy: ids)
    }

    /// The same for groups of slots (the regions of one guest): how many stable nodes have
    /// members in both groups, each node counted once per pair of groups. Slots not in
    /// `groups` are left out.
    public func sharingMatrix<Key: Hashable>(groupedBy groups: [SlotID: Key]) -> [Key: [Key: Int]] {
        var nodeMembers: [UInt32: Set<Key>] = [:]
        for case let slot? in slots {
            guard let key = groups[slot.id] else { continue }
            for case let chunk? in slot.chunks {
                for i in 0..<RmapChunk.pages {
                    let w = RmapWord(raw: chunk.words[i])
                    if w.isTracked && w.kind == .stable { nodeMembers[w.node, default: []].insert(key) }
                }
            }
        }
        var matrix: [Key: [Key: Int]] = [:]
        for (_, members) in nodeMembers {
            for a in members {
                for b in members { matrix[a, default: [:]][b, default: 0] += 1 }
            }
        }
        return matrix
    }

    // MARK: The scan

    /// Scans up to `pages_to_scan` pages, resuming where the last batch stopped
    /// (ksm.c's `ksm_do_scan`). Does nothing unless `run` is `.merge`. With
    /// `endingFullScans`, the batch also ends when a full scan completes, so a caller can
    /// count passes exactly.
    @discardableResult
    public func scanBatch(endingFullScans: Bool = false) -> BatchReport {
        var report = BatchReport()
        guard run == .merge else { return report }
        let scannedBefore = pagesScanned
        var budget = tunables.pagesToScan
        while budget > 0 && !scanList.isEmpty {
            if atHead { startFullScan() }
            if cursorPosition >= scanList.count {
                let idleRound = pagesVisitedThisRound == 0
                finishFullScan()
                report.fullScansCompleted += 1
                if idleRound || endingFullScans { break }  // nothing resident anywhere: don't spin
                continue
            }
            let slot = slots[scanList[cursorPosition]]!
            if slot.failed || cursorPage >= slot.pageCount {
                if !slot.failed { slot.fullScans += 1 }
                cursorPosition += 1
                cursorPage = 0
                continue
            }
            budget = scanWindow(slot, budget: budget)
        }
        for failure in failures { removeSlot(failure.slot) }
        report.failures = failures
        failures = []
        report.pagesScanned = pagesScanned - scannedBefore
        return report
    }

    private func startFullScan() {
        // "The unstable tree is flushed every time KSM completes scanning all memory areas,
        // and then the tree is rebuilt again from the beginning."
        unstable.reset()
        freeIndexes.append(contentsOf: quarantinedIndexes)
        quarantinedIndexes = []
        cursorPosition = 0
        cursorPage = 0
        atHead = false
        pagesVisitedThisRound = 0
    }

    private func finishFullScan() {
        fullScans += 1
        atHead = true
    }

    private func fail(_ slot: Slot, _ error: any Error) {
        guard !slot.failed else { return }
        slot.failed = true
        failures.append(SlotFailure(slot: slot.id, name: slot.options.name, reason: "\(error)"))
    }

    /// Scans from the cursor to the end of its rmap chunk or until the budget is spent.
    private func scanWindow(_ slot: Slot, budget startBudget: Int) -> Int {
        var budget = startBudget
        let start = cursorPage
        let c = start >> RmapChunk.shift
        let end = min(slot.pageCount, (c + 1) << RmapChunk.shift)
        let window = UnsafeMutableBufferPointer(rebasing: residency[0..<(end - start)])
        do {
            try slot.source.residency(of: start..<end, into: window)
        } catch {
            fail(slot, error)
            return budget
        }

        // Pass 1: drop items of pages that went away, apply smart scan, pick pages to read.
        pageList.removeAll(keepingCapacity: true)
        var page = start
        while page < end {
            let resident = window[page - start] & 1 != 0
            if !resident {
                if let chunk = slot.chunks[c], chunk.words[page & (RmapChunk.pages - 1)] != 0 {
                    forget(slot, chunk: c, page: page)
                }
                page += 1
                continue
            }
            if budget == 0 { break }
            budget -= 1
            pagesVisitedThisRound += 1
            if tunables.smartScan, let chunk = slot.chunks[c], shouldSkip(slot, chunk.words + (page & (RmapChunk.pages - 1))) {
                page += 1
                continue
            }
            pageList.append(page)
            page += 1
        }
        cursorPage = page
        flushDissolve()

        if !pageList.isEmpty && slot.chunks[c] == nil { slot.chunks[c] = RmapChunk.allocate() }

        // Pass 2: read runs of contiguous pages with one pread each, then merge page by page.
        var k = 0
        while k < pageList.count && !slot.failed {
            let first = pageList[k]
            var runEnd = k + 1
            while runEnd < pageList.count && pageList[runEnd] == pageList[runEnd - 1] + 1
                && runEnd - k < Engine.readBatchPages
            {
                runEnd += 1
            }
            let count = runEnd - k
            do {
                try slot.source.read(first..<(first + count), into: UnsafeMutableRawBufferPointer(start: readBuffer, count: count * pageSize))
            } catch {
                fail(slot, error)
                break
            }
            for j in 0..<count where !slot.failed {
                cmpAndMerge(slot, chunk: c, page: first + j, content: readBuffer + j * pageSize)
            }
            k = runEnd
        }

        if let chunk = slot.chunks[c], slot.chunkTracked[c] == 0 {
            chunk.deallocate()
            slot.chunks[c] = nil
        }
        return budget
    }

    /// Smart scan (from current kernels): a page that keeps failing to merge is skipped for
    /// exponentially more passes. Pages already merged or zero are never skipped.
    private func shouldSkip(_ slot: Slot, _ wordPointer: UnsafeMutablePointer<UInt32>) -> Bool {
        var w = RmapWord(raw: wordPointer.pointee)
        guard w.isTracked, w.kind == .none || w.kind == .unstable else { return false }
        let age = w.age
        let nextAge = min(age + 1, 15)
        // Young pages get their chance to go through the phases of merging.
        if age < 3 {
            w.setSmartScan(age: nextAge, remainingSkips: w.remainingSkips)
            wordPointer.pointee = w.raw
            return false
        }
        if w.remainingSkips == 0 {
            let skips: UInt32 = age <= 3 ? 1 : age <= 5 ? 2 : age <= 8 ? 4 : 8
            w.setSmartScan(age: nextAge, remainingSkips: skips)
            wordPointer.pointee = w.raw
            return false
        }
        w.setSmartScan(age: nextAge, remainingSkips: w.remainingSkips - 1)
        if w.kind == .unstable {
            unshared -= 1
            slot.unshared -= 1
            w = w.with(kind: .none)
        }
        wordPointer.pointee = w.raw
        pagesSkipped += 1
        slot.pagesSkipped += 1
        return true
    }

    /// Smart scan's back-off, asked for from outside: the page (resident, not merged) is
    /// skipped for the next `passes` visits (at most 15), as if it had kept failing to merge.
    /// The agent uses it for zero pages it reclaimed and the guest touched again, so a guest
    /// that keeps reading its free pages does not churn. Needs `smart_scan` on.
    public func backOff(slot id: SlotID, page: Int, passes: Int = 8) {
        guard let slot = slot(id), page >= 0, page < slot.pageCount, passes > 0 else { return }
        let c = page >> RmapChunk.shift
        if slot.chunks[c] == nil { slot.chunks[c] = RmapChunk.allocate() }
        let chunk = slot.chunks[c]!
        var w = RmapWord(raw: chunk.words[page & (RmapChunk.pages - 1)])
        if !w.isTracked {
            tracked += 1
            slot.tracked += 1
            slot.chunkTracked[c] += 1
            w = w.with(kind: .none)
        }
        switch w.kind {
        case .stable:
            return  // merged pages are never skipped
        case .zero:
            // It was reclaimed and touched again: no longer known to be zero.
            if w.zeroConfirmed {
                zeroConfirmed -= 1
                slot.zeroConfirmed -= 1
            }
            w = w.with(kind: .none)
        case .none, .unstable:
            break
        }
        w.setSmartScan(age: 15, remainingSkips: UInt32(min(passes, 15)))
        chunk.words[page & (RmapChunk.pages - 1)] = w.raw
    }

    /// Drops a page's rmap item: the page went away (a hole) or its slot is leaving.
    private func forget(_ slot: Slot, chunk c: Int, page: Int) {
        let wordPointer = slot.chunks[c]!.words + (page & (RmapChunk.pages - 1))
        let w = RmapWord(raw: wordPointer.pointee)
        switch w.kind {
        case .stable: leave(w.node, slot, page: page)
        case .unstable: unshared -= 1; slot.unshared -= 1
        case .zero: if w.zeroConfirmed { zeroConfirmed -= 1; slot.zeroConfirmed -= 1 }
        case .none: break
        }
        wordPointer.pointee = 0
        tracked -= 1
        slot.tracked -= 1
        slot.chunkTracked[c] -= 1
    }

    /// A member leaves its stable node (the analogue of breaking COW on a KSM page).
    private func leave(_ n: UInt32, _ slot: Slot, page: Int) {
        stable[n].members -= 1
        totalMembers -= 1
        slot.members -= 1
        if stable[n].repSlot == UInt32(slot.id.index) && stable[n].repPage == UInt32(page) {
            stable[n].repSlot = StableNode.vacant
            slot.owned -= 1
        }
        if stable[n].members == 0 { pendingDissolve.append(n) }
    }

    private func flushDissolve() {
        for n in pendingDissolve { stable.dissolve(n) }
        pendingDissolve.removeAll(keepingCapacity: true)
    }

    /// Reads one page of a slot into the compare buffer, if it is resident: a page swapped out
    /// or punched since it was scanned is not read (a read would swap it in) and compares as
    /// different. A slot that can't be read fails.
    private func readForCompare(slotIndex: Int, page: Int) -> Bool {
        guard let other = slots[slotIndex], !other.failed else { return false }
        do {
            var resident: UInt8 = 0
            try withUnsafeMutablePointer(to: &resident) { pointer in
                try other.source.residency(of: page..<(page + 1), into: UnsafeMutableBufferPointer(start: pointer, count: 1))
            }
            guard resident & 1 != 0 else { return false }
            try other.source.read(page: page, into: UnsafeMutableRawBufferPointer(start: compareBuffer, count: pageSize))
            return true
        } catch {
            fail(other, error)
            return false
        }
    }

    /// ksm.c's `cmp_and_merge_page`: classifies one freshly read page.
    private func cmpAndMerge(_ slot: Slot, chunk c: Int, page: Int, content: UnsafeRawPointer) {
        let chunk = slot.chunks[c]!
        let i = page & (RmapChunk.pages - 1)
        let wordPointer = chunk.words + i
        let checksumPointer = chunk.checksums + i
        var w = RmapWord(raw: wordPointer.pointee)
        pagesScanned += 1
        slot.pagesScanned += 1
        if !w.isTracked {
            tracked += 1
            slot.tracked += 1
            slot.chunkTracked[c] += 1
        }

        // Zero pages are their own class: never a stable node; reclaim candidates once
        // they stayed zero over two visits.
        if isZeroPage(content) {
            switch w.kind {
            case .zero:
                if !w.zeroConfirmed {
                    w = w.with(kind: .zero, confirmed: true)
                    zeroConfirmed += 1
                    slot.zeroConfirmed += 1
                    wordPointer.pointee = w.raw
                    reclaimHook?(slot.id, page)
                }
                return
            case .stable:
                leave(w.node, slot, page: page)
                flushDissolve()
            case .unstable:
                unshared -= 1
                slot.unshared -= 1
            case .none:
                break
            }
            checksumPointer.pointee = zeroChecksum
            wordPointer.pointee = w.with(kind: .zero).raw
            return
        }

        let hash = hasher.hash(content)
        let checksum = UnstableTree.checksum(of: hash)
        switch w.kind {
        case .stable:
            let n = w.node
            if stable[n].hash == hash {
                // Still the merged content. A vacant node takes this member as its new
                // representative.
                if stable[n].isVacant {
                    stable[n].repSlot = UInt32(slot.id.index)
                    stable[n].repPage = UInt32(page)
                    slot.owned += 1
                }
                return
            }
            // Changed under us: it leaves the node, like a COW break.
            leave(n, slot, page: page)
            flushDissolve()
            checksumPointer.pointee = checksum
            wordPointer.pointee = w.with(kind: .none).raw
            return
        case .zero:
            if w.zeroConfirmed {
                zeroConfirmed -= 1
                slot.zeroConfirmed -= 1
            }
            checksumPointer.pointee = checksum
            wordPointer.pointee = w.with(kind: .none).raw
            return
        case .unstable:
            // Filed in a previous pass's unstable tree, which is gone.
            unshared -= 1
            slot.unshared -= 1
        case .none:
            break
        }

        // "If the hash value of the page has changed from the last time we calculated it,
        // this page is changing frequently: therefore we don't want to insert it in the
        // unstable tree" -- but it may still join the stable tree at once.
        let unchanged = w.visited && checksumPointer.pointee == checksum
        checksumPointer.pointee = checksum
        w = w.with(kind: .none)
        wordPointer.pointee = w.raw
        guard slot.options.merging else { return }

        if stableTreeSearch(slot, page: page, content: content, hash: hash, wordPointer: wordPointer) { return }
        if unchanged {
            unstableTreeSearchInsert(slot, page: page, content: content, hash: hash, wordPointer: wordPointer)
        }
    }

    private func capReached(_ slot: Slot) -> Bool {
        slot.options.maxPages != 0 && slot.members >= slot.options.maxPages
    }

    /// Looks the page up in the stable tree and joins a node whose representative has the
    /// same bytes. Returns true when the page is done for this pass: it joined, or a vacant
    /// node with its hash means it waits for the node's next member rather than start a
    /// duplicate node.
    private func stableTreeSearch(
        _ slot: Slot, page: Int, content: UnsafeRawPointer, hash: UInt64,
        wordPointer: UnsafeMutablePointer<UInt32>
    ) -> Bool {
        let group = slot.group
        var done = false
        var probe = stable.probeStart(hash: hash, group: group)
        while let n = stable.nextCandidate(&probe, hash: hash, group: group) {
            let node = stable[n]
            if node.isVacant { done = true; continue }
            if tunables.maxPageSharing != 0 && node.members >= UInt32(tunables.maxPageSharing) { continue }
            guard readForCompare(slotIndex: Int(node.repSlot), page: Int(node.repPage)) else {
                done = true
                continue
            }
            if pagesIdentical(content, compareBuffer) {
                if capReached(slot) {
                    mergesRefused += 1
                    slot.mergesRefused += 1
                    done = true
                    break
                }
                stable[n].members += 1
                totalMembers += 1
                slot.members += 1
                wordPointer.pointee = RmapWord.stable(node: n).raw
                done = true
                break
            }
            if hasher.hash(compareBuffer) != node.hash {
                // The representative changed since it was last seen: it leaves, and the node
                // waits for its next unchanged member.
                evictRepresentative(n)
                done = true
            }
            // Otherwise a true hash collision: different content, same hash. Go on.
        }
        flushDissolve()
        return done
    }

    private func evictRepresentative(_ n: UInt32) {
        let node = stable[n]
        guard let owner = slots[Int(node.repSlot)] else { return }
        let page = Int(node.repPage)
        let c = page >> RmapChunk.shift
        let wordPointer = owner.chunks[c]!.words + (page & (RmapChunk.pages - 1))
        // Keep its old checksum: its next visit sees it changed, as it did.
        wordPointer.pointee = RmapWord(raw: RmapWord.visitedBit).raw
        leave(n, owner, page: page)
    }

    /// ksm.c's `unstable_tree_search_insert`: finds an identical page filed this pass and
    /// promotes the pair to a new stable node, or files this page.
    private func unstableTreeSearchInsert(
        _ slot: Slot, page: Int, content: UnsafeRawPointer, hash: UInt64,
        wordPointer: UnsafeMutablePointer<UInt32>
    ) {
        let group = slot.group
        let checksum = UnstableTree.checksum(of: hash)
        var probe = unstable.probeStart(hash: hash, group: group)
        while let entry = unstable.nextCandidate(&probe, hash: hash) {
            let otherIndex = UnstableTree.slot(of: entry)
            let otherPage = UnstableTree.page(of: entry)
            guard otherIndex < slots.count, let other = slots[otherIndex], !other.failed,
                other.group == group, other.options.merging,
                otherIndex != slot.id.index || otherPage != page,
                let otherChunk = other.chunks[otherPage >> RmapChunk.shift]
            else { continue }
            let i = otherPage & (RmapChunk.pages - 1)
            let otherWord = RmapWord(raw: otherChunk.words[i])
            guard otherWord.isTracked, otherWord.kind == .unstable, otherChunk.checksums[i] == checksum,
                readForCompare(slotIndex: otherIndex, page: otherPage)
            else { continue }

            if pagesIdentical(content, compareBuffer) {
                if (tunables.maxKernelPages != 0 && stable.liveCount >= tunables.maxKernelPages)
                    || capReached(slot) || capReached(other)
                {
                    mergesRefused += 1
                    slot.mergesRefused += 1
                    return
                }
                let n = stable.insert(hash: hash, group: group, repSlot: UInt32(otherIndex), repPage: UInt32(otherPage))
                otherChunk.words[i] = RmapWord.stable(node: n).raw
                wordPointer.pointee = RmapWord.stable(node: n).raw
                unshared -= 1
                other.unshared -= 1
                other.members += 1
                other.owned += 1
                slot.members += 1
                totalMembers += 2
                return
            }
            if hasher.hash(compareBuffer) != hash {
                // It changed since it was filed: the entry is stale.
                otherChunk.words[i] = otherWord.with(kind: .none).raw
                unshared -= 1
                other.unshared -= 1
            }
        }

        unstable.insert(UnstableTree.entry(slot: slot.id.index, page: page, hash: hash), hash: hash, group: group) {
            entry in self.unstableEntryKey(entry)
        }
        wordPointer.pointee = RmapWord(raw: wordPointer.pointee).with(kind: .unstable).raw
        unshared += 1
        slot.unshared += 1
    }

    /// The checksum and group an unstable entry was filed under, or nil if it went stale.
    private func unstableEntryKey(_ entry: UInt64) -> (checksum: UInt32, group: UInt32)? {
        let index = UnstableTree.slot(of: entry)
        let page = UnstableTree.page(of: entry)
        guard index < slots.count, let slot = slots[index], let chunk = slot.chunks[page >> RmapChunk.shift] else {
            return nil
        }
        let i = page & (RmapChunk.pages - 1)
        guard RmapWord(raw: chunk.words[i]).kind == .unstable else { return nil }
        return (chunk.checksums[i], slot.group)
    }

    /// `run = 2`: drops every rmap item and both trees. Scan counters are kept.
    private func unmergeAll() {
        for case let slot? in slots {
            slot.freeChunks()
            slot.tracked = 0
            slot.members = 0
            slot.owned = 0
            slot.unshared = 0
            slot.zeroConfirmed = 0
        }
        stable.removeAll()
        unstable.reset()
        pendingDissolve = []
        tracked = 0
        totalMembers = 0
        unshared = 0
        zeroConfirmed = 0
        atHead = true
    }

    // MARK: Invariants

    /// Checks the trees and counters against a full walk of every rmap item. Returns the
    /// violations found; empty when all hold. For tests: it walks everything.
    public func invariantViolations() -> [String] {
        var problems: [String] = []
        var members = [UInt32: Int]()
        var g = (tracked: 0, members: 0, unshared: 0, zero: 0)
        for case let slot? in slots {
            var s = (tracked: 0, members: 0, owned: 0, unshared: 0, zero: 0)
            for (c, chunk) in slot.chunks.enumerated() {
                guard let chunk else { continue }
                var inChunk = 0
                for i in 0..<RmapChunk.pages {
                    let w = RmapWord(raw: chunk.words[i])
                    guard w.isTracked else { continue }
                    let page = c << RmapChunk.shift | i
                    if page >= slot.pageCount { problems.append("\(slot.id): item past the end at page \(page)") }
                    inChunk += 1
                    s.tracked += 1
                    switch w.kind {
                    case .stable:
                        s.members += 1
                        members[w.node, default: 0] += 1
                        let node = stable[w.node]
                        if !node.isLive { problems.append("\(slot.id) page \(page): member of dead node \(w.node)") }
                        if node.group != slot.group { problems.append("\(slot.id) page \(page): node \(w.node) of another trust group") }
                        if !slot.options.merging { problems.append("\(slot.id) page \(page): merged in a non-merging slot") }
                        if node.repSlot == UInt32(slot.id.index) && node.repPage == UInt32(page) { s.owned += 1 }
                    case .unstable: s.unshared += 1
                    case .zero: if w.zeroConfirmed { s.zero += 1 }
                    case .none: break
                    }
                }
                if inChunk != Int(slot.chunkTracked[c]) { problems.append("\(slot.id) chunk \(c): tracked \(slot.chunkTracked[c]), walked \(inChunk)") }
                if inChunk == 0 { problems.append("\(slot.id) chunk \(c): allocated but empty") }
            }
            if (s.tracked, s.members, s.owned, s.unshared, s.zero)
                != (slot.tracked, slot.members, slot.owned, slot.unshared, slot.zeroConfirmed)
            {
                problems.append("\(slot.id): counters (tracked \(slot.tracked), members \(slot.members), owned \(slot.owned), unshared \(slot.unshared), zero \(slot.zeroConfirmed)) but walked \(s)")
            }
            if slot.options.maxPages != 0 && slot.members > slot.options.maxPages {
                problems.append("\(slot.id): \(slot.members) pages sharing over its cap \(slot.options.maxPages)")
            }
            g.tracked += s.tracked; g.members += s.members; g.unshared += s.unshared; g.zero += s.zero
        }
        if (g.tracked, g.members, g.unshared, g.zero) != (tracked, totalMembers, unshared, zeroConfirmed) {
            problems.append("global counters (tracked \(tracked), members \(totalMembers), unshared \(unshared), zero \(zeroConfirmed)) but walked \(g)")
        }
        var live = 0
        for (n, node) in stable.nodes.enumerated() where node.isLive {
            live += 1
            let n = UInt32(n)
            if members[n, default: 0] != Int(node.members) {
                problems.append("node \(n): \(node.members) members, walked \(members[n, default: 0])")
            }
            if tunables.maxPageSharing != 0 && node.members > UInt32(tunables.maxPageSharing) {
                problems.append("node \(n): \(node.members) members over max_page_sharing")
            }
            if !stable.isIndexed(n) { problems.append("node \(n): not findable in the stable index") }
            if !node.isVacant {
                let rep = slots[Int(node.repSlot)]
                let page = Int(node.repPage)
                let word = rep?.chunks[page >> RmapChunk.shift].map { RmapWord(raw: $0.words[page & (RmapChunk.pages - 1)]) }
                if word != RmapWord.stable(node: n) { problems.append("node \(n): representative is not a member") }
            }
        }
        if live != stable.liveCount || stable.indexedCount != live {
            problems.append("stable tree: \(stable.liveCount) counted, \(live) live, \(stable.indexedCount) indexed")
        }
        for entry in unstable.entries {
            let index = UnstableTree.slot(of: entry)
            if index >= slots.count { problems.append("unstable entry for slot index \(index) that never existed") }
        }
        if tracked - totalMembers - unshared - zeroConfirmed < 0 { problems.append("negative pages_volatile") }
        return problems
    }
}

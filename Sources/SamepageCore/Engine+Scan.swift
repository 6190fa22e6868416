// The scan: ksm.c's `ksm_do_scan` and `scan_get_next_rmap_item`.
//
// A batch walks the scan list from the cursor, slot by slot and, inside a slot, one rmap chunk
// (2 MiB of guest RAM) at a time. For each window it first asks the slot's source which pages
// are resident: items of pages that went away are dropped without reading anything, and only
// resident pages are ever read, in contiguous runs with one read each. Every read page then
// goes through `cmpAndMerge` (Engine+Merge.swift). Reaching the end of the list completes a
// full scan; the next batch starts a new one with an empty unstable tree.

/// What one batch did.
public struct BatchReport: Sendable {
    /// Pages read and classified in this batch.
    public var pagesScanned = 0
    /// Full scans completed during this batch.
    public var fullScansCompleted = 0
    /// Slots the engine dropped because their memory could no longer be read.
    public var failures: [SlotFailure] = []
    /// Pages found all zero on two visits in a row during this batch, in scan order: the
    /// reclaim candidates (what to do with them is the caller's business). A page is reported
    /// once per confirmation: again only after it held something else and then zero over two
    /// more visits. A page may be of a slot listed in `failures`, already removed.
    ///
    /// Ownership: the storage is the engine's scratch buffer, reused by its next batch. A
    /// caller that lets the report go before the next `scanBatch` (the usual loop) costs no
    /// allocation; one that keeps it keeps its own valid copy (copy-on-write), and the engine
    /// then starts a new buffer.
    public var confirmedZeroPages: [SlotPage] = []
    /// Pages found all zero for the first time (after holding something else, or on their
    /// first visit) during this batch, in scan order: the engine confirms them only at its
    /// next visit, a full scan later, and a caller that wants them sooner may look again
    /// after a short interval of its own. Same ownership as ``confirmedZeroPages``.
    public var newZeroPages: [SlotPage] = []
    public init() {}
}

extension Engine {
    /// Scans up to `pages_to_scan` pages, resuming where the last batch stopped
    /// (ksm.c's `ksm_do_scan`). Does nothing unless `run` is `.merge`. With
    /// `endingFullScans`, the batch also ends when a full scan completes, so a caller can
    /// count passes exactly.
    @discardableResult
    public func scanBatch(endingFullScans: Bool = false) -> BatchReport {
        var report = BatchReport()
        guard run == .merge else { return report }
        confirmedZeroPages.removeAll(keepingCapacity: true)
        newZeroPages.removeAll(keepingCapacity: true)
        let scannedBefore = tally.pagesScanned
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
                if !slot.failed { slot.tally.fullScans += 1 }
                cursorPosition += 1
                cursorPage = 0
                continue
            }
            budget = scanWindow(slot, budget: budget)
        }
        for failure in failures { removeSlot(failure.slot) }
        report.failures = failures
        failures = []
        report.confirmedZeroPages = confirmedZeroPages
        report.newZeroPages = newZeroPages
        report.pagesScanned = tally.pagesScanned - scannedBefore
        return report
    }

    func startFullScan() {
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

    func finishFullScan() {
        tally.fullScans += 1
        atHead = true
    }

    func fail(_ slot: Slot, _ error: any Error) {
        guard !slot.failed else { return }
        slot.failed = true
        failures.append(SlotFailure(slot: slot.id, name: slot.options.name, reason: "\(error)"))
    }

    /// Scans from the cursor to the end of its rmap chunk or until the budget is spent.
    func scanWindow(_ slot: Slot, budget startBudget: Int) -> Int {
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
            } catch is NoLongerResident {
                // Swapped or reclaimed since residency: skipped this pass, items untouched.
                k = runEnd
                continue
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
    func shouldSkip(_ slot: Slot, _ wordPointer: UnsafeMutablePointer<UInt32>) -> Bool {
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
            count(.leftUnstable, in: slot)
            w = w.with(kind: .none)
        }
        wordPointer.pointee = w.raw
        count(.pageSkipped, in: slot)
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
            count(.itemAdded, in: slot)
            slot.chunkTracked[c] += 1
            w = w.with(kind: .none)
        }
        switch w.kind {
        case .stable:
            return  // merged pages are never skipped
        case .zero:
            // It was reclaimed and touched again: no longer known to be zero.
            if w.zeroConfirmed { count(.zeroUnconfirmed, in: slot) }
            w = w.with(kind: .none)
        case .none, .unstable:
            break
        }
        w.setSmartScan(age: 15, remainingSkips: UInt32(min(passes, 15)))
        chunk.words[page & (RmapChunk.pages - 1)] = w.raw
    }
}

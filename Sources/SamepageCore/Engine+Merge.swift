// Merging: ksm.c's `cmp_and_merge_page` and the two trees it consults.
//
// A freshly read page is classified in this order: a zero page is its own class (counted and
// reported once it stayed zero over two visits, never a stable node); a page still holding
// its stable node's content stays; any other page is looked up in the stable tree first, and,
// only if its checksum did not change since the previous pass, in the unstable tree, where a
// match promotes the pair to a new stable node. Both trees are keyed by the stored content
// hash, which only finds candidates: every join is confirmed by a full compare against the
// other page, read fresh and only if it is still resident (`readForCompare`). A member whose
// content changed leaves its node, as a write to a KSM page breaks COW in the kernel; a node
// left without members is dissolved.

extension Engine {
    /// ksm.c's `cmp_and_merge_page`: classifies one freshly read page.
    func cmpAndMerge(_ slot: Slot, chunk c: Int, page: Int, content: UnsafeRawPointer) {
        let chunk = slot.chunks[c]!
        let i = page & (RmapChunk.pages - 1)
        let wordPointer = chunk.words + i
        let checksumPointer = chunk.checksums + i
        var w = RmapWord(raw: wordPointer.pointee)
        count(.pageScanned, in: slot)
        if !w.isTracked {
            count(.itemAdded, in: slot)
            slot.chunkTracked[c] += 1
        }

        // Zero pages are their own class: never a stable node; reclaim candidates once
        // they stayed zero over two visits.
        if isZeroPage(content) {
            switch w.kind {
            case .zero:
                if !w.zeroConfirmed {
                    w = w.with(kind: .zero, confirmed: true)
                    count(.zeroConfirmed, in: slot)
                    wordPointer.pointee = w.raw
                    confirmedZeroPages.append(SlotPage(slot: slot.id, page: page))
                }
                return
            case .stable:
                leave(w.node, slot, page: page)
                flushDissolve()
            case .unstable:
                count(.leftUnstable, in: slot)
            case .none:
                break
            }
            checksumPointer.pointee = zeroChecksum
            wordPointer.pointee = w.with(kind: .zero).raw
            newZeroPages.append(SlotPage(slot: slot.id, page: page))
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
            if w.zeroConfirmed { count(.zeroUnconfirmed, in: slot) }
            checksumPointer.pointee = checksum
            wordPointer.pointee = w.with(kind: .none).raw
            return
        case .unstable:
            // Filed in a previous pass's unstable tree, which is gone.
            count(.leftUnstable, in: slot)
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

    func capReached(_ slot: Slot) -> Bool {
        slot.options.maxPages != 0 && slot.members >= slot.options.maxPages
    }

    /// Looks the page up in the stable tree and joins a node whose representative has the
    /// same bytes. Returns true when the page is done for this pass: it joined, or a vacant
    /// node with its hash means it waits for the node's next member rather than start a
    /// duplicate node.
    func stableTreeSearch(
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
                    count(.mergeRefused, in: slot)
                    done = true
                    break
                }
                stable[n].members += 1
                count(.joinedStable, in: slot)
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

    func evictRepresentative(_ n: UInt32) {
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
    func unstableTreeSearchInsert(
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
                    count(.mergeRefused, in: slot)
                    return
                }
                let n = stable.insert(hash: hash, group: group, repSlot: UInt32(otherIndex), repPage: UInt32(otherPage))
                otherChunk.words[i] = RmapWord.stable(node: n).raw
                wordPointer.pointee = RmapWord.stable(node: n).raw
                count(.leftUnstable, in: other)
                count(.joinedStable, in: other)
                other.owned += 1
                count(.joinedStable, in: slot)
                return
            }
            if hasher.hash(compareBuffer) != hash {
                // It changed since it was filed: the entry is stale.
                otherChunk.words[i] = otherWord.with(kind: .none).raw
                count(.leftUnstable, in: other)
            }
        }

        unstable.insert(UnstableTree.entry(slot: slot.id.index, page: page, hash: hash), hash: hash, group: group) {
            entry in self.unstableEntryKey(entry)
        }
        wordPointer.pointee = RmapWord(raw: wordPointer.pointee).with(kind: .unstable).raw
        count(.filedUnstable, in: slot)
    }

    /// The checksum and group an unstable entry was filed under, or nil if it went stale.
    func unstableEntryKey(_ entry: UInt64) -> (checksum: UInt32, group: UInt32)? {
        let index = UnstableTree.slot(of: entry)
        let page = UnstableTree.page(of: entry)
        guard index < slots.count, let slot = slots[index], let chunk = slot.chunks[page >> RmapChunk.shift] else {
            return nil
        }
        let i = page & (RmapChunk.pages - 1)
        guard RmapWord(raw: chunk.words[i]).kind == .unstable else { return nil }
        return (chunk.checksums[i], slot.group)
    }

    // MARK: Leaving the trees

    /// Drops a page's rmap item: the page went away (a hole) or its slot is leaving.
    func forget(_ slot: Slot, chunk c: Int, page: Int) {
        let wordPointer = slot.chunks[c]!.words + (page & (RmapChunk.pages - 1))
        let w = RmapWord(raw: wordPointer.pointee)
        switch w.kind {
        case .stable: leave(w.node, slot, page: page)
        case .unstable: count(.leftUnstable, in: slot)
        case .zero: if w.zeroConfirmed { count(.zeroUnconfirmed, in: slot) }
        case .none: break
        }
        wordPointer.pointee = 0
        count(.itemDropped, in: slot)
        slot.chunkTracked[c] -= 1
    }

    /// A member leaves its stable node (the analogue of breaking COW on a KSM page).
    func leave(_ n: UInt32, _ slot: Slot, page: Int) {
        stable[n].members -= 1
        count(.leftStable, in: slot)
        if stable[n].repSlot == UInt32(slot.id.index) && stable[n].repPage == UInt32(page) {
            stable[n].repSlot = StableNode.vacant
            slot.owned -= 1
        }
        if stable[n].members == 0 { pendingDissolve.append(n) }
    }

    func flushDissolve() {
        for n in pendingDissolve { stable.dissolve(n) }
        pendingDissolve.removeAll(keepingCapacity: true)
    }

    // MARK: The confirming compare

    /// Reads one page of a slot into the compare buffer, if it is resident: a page swapped out
    /// or punched since it was scanned is not read (a read would swap it in) and compares as
    /// different, as does one that left memory between residency and read
    /// (``NoLongerResident``). A slot that can't be read fails.
    func readForCompare(slotIndex: Int, page: Int) -> Bool {
        guard let other = slots[slotIndex], !other.failed else { return false }
        do {
            var resident: UInt8 = 0
            try withUnsafeMutablePointer(to: &resident) { pointer in
                try other.source.residency(of: page..<(page + 1), into: UnsafeMutableBufferPointer(start: pointer, count: 1))
            }
            guard resident & 1 != 0 else { return false }
            try other.source.read(page: page, into: UnsafeMutableRawBufferPointer(start: compareBuffer, count: pageSize))
            return true
        } catch is NoLongerResident {
            return false
        } catch {
            fail(other, error)
            return false
        }
    }
}

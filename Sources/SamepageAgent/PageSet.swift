/// A set of page indexes of one region, as a bitmap: one bit per page, 8 KiB per GiB of
/// guest RAM, allocated when the first page is inserted.
struct PageSet {
    private var words: [UInt64] = []
    let pageCount: Int
    private(set) var count = 0

    init(pageCount: Int) { self.pageCount = pageCount }

    var isEmpty: Bool { count == 0 }

    func contains(_ page: Int) -> Bool {
        guard !words.isEmpty else { return false }
        return words[page >> 6] & (1 << UInt64(page & 63)) != 0
    }

    mutating func insert(_ pages: Range<Int>) {
        if words.isEmpty { words = Array(repeating: 0, count: (pageCount + 63) >> 6) }
        for page in pages where !contains(page) {
            words[page >> 6] |= 1 << UInt64(page & 63)
            count += 1
        }
    }

    mutating func remove(_ page: Int) {
        guard contains(page) else { return }
        words[page >> 6] &= ~(1 << UInt64(page & 63))
        count -= 1
    }

    /// The pages in the set, as maximal contiguous ranges in address order.
    var ranges: [Range<Int>] {
        var result: [Range<Int>] = []
        var start: Int?
        for (w, word) in words.enumerated() where word != 0 || start != nil {
            for bit in 0..<64 {
                let page = w << 6 | bit
                guard page < pageCount else { break }
                let present = word & (1 << UInt64(bit)) != 0
                if present, start == nil { start = page }
                if !present, let s = start {
                    result.append(s..<page)
                    start = nil
                }
            }
        }
        if let s = start { result.append(s..<pageCount) }
        return result
    }
}

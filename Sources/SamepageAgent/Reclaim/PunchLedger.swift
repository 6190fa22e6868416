import Foundation

/// What samepaged punched in each guest backend, and which of those pages the guest touched
/// again, in pages of the backend file: the record that outlives a mapping.
///
/// A guest's ``ReclaimState`` counts holes per region of its current mapping, and a remap (a
/// disk hot-plug, a policy reload, a RAM-layout change) or a restart of samepaged forgets
/// them. The ledger keeps them by backend, so that the host-wide `max_bytes` cap counts every
/// hole still there, `run unmerge` refills the holes of earlier mappings too, and a page that
/// refaulted is not punched again. A backend is a file (device and inode) of one QEMU run
/// (pid and start time): a memfd dies with its QEMU, and an inode number can be used again.
///
/// A plain value: the file it is kept in is ``PunchLedgerFile``'s, the guests' side
/// ``PunchRecords``'.
struct PunchLedger: Codable, Equatable, Sendable {
    /// A backend file of one QEMU run.
    struct Backend: Codable, Hashable, Sendable {
        var deviceMajor: UInt32
        var deviceMinor: UInt32
        var inode: UInt64
        var pid: Int32
        /// Field 22 of `/proc/PID/stat`: a recycled pid has another.
        var processStart: UInt64

        enum CodingKeys: String, CodingKey {
            case inode, pid
            case deviceMajor = "device_major"
            case deviceMinor = "device_minor"
            case processStart = "process_start"
        }
    }

    /// One backend's pages, in file pages (offset in the file / page size).
    struct Pages: Codable, Equatable, Sendable {
        /// Punched and, when last looked at, still holes.
        var held = PageRanges()
        /// Punched once, then touched by the guest: not punched again while its QEMU runs.
        var hot = PageRanges()

        var isEmpty: Bool { held.isEmpty && hot.isEmpty }
    }

    private(set) var backends: [Backend: Pages] = [:]

    init() {}

    /// Pages held over every backend.
    var heldPages: Int { backends.values.reduce(0) { $0 + $1.held.count } }

    /// The pages of `backend` within the file pages `window`, relative to the window's start
    /// (the page indexes of a region that maps the window).
    func pages(of backend: Backend, in window: Range<Int>) -> Pages {
        guard let pages = backends[backend] else { return Pages() }
        return Pages(held: pages.held.slice(window), hot: pages.hot.slice(window))
    }

    /// Replaces what is recorded of `backend` within the file pages `window` with `pages`
    /// (relative to the window's start, as a region counts them); the rest of the file is kept.
    mutating func record(_ pages: Pages, of backend: Backend, in window: Range<Int>) {
        var entry = backends[backend] ?? Pages()
        entry.held.replace(window, with: pages.held)
        entry.hot.replace(window, with: pages.hot)
        backends[backend] = entry.isEmpty ? nil : entry
    }

    /// Forgets the backends `isGone` says are gone (their QEMU exited: the memory is released).
    /// Returns how many were forgotten.
    @discardableResult
    mutating func forget(where isGone: (Backend) -> Bool) -> Int {
        let gone = backends.keys.filter(isGone)
        for backend in gone { backends[backend] = nil }
        return gone.count
    }

    // The wire form: a list, since JSON objects have string keys only.
    private struct Entry: Codable {
        var backend: Backend
        var pages: Pages
    }

    init(from decoder: any Decoder) throws {
        let entries = try decoder.singleValueContainer().decode([Entry].self)
        for entry in entries {
            guard backends[entry.backend] == nil else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "backend listed twice"))
            }
            backends[entry.backend] = entry.pages
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        let entries = backends.sorted { ($0.key.pid, $0.key.inode) < ($1.key.pid, $1.key.inode) }.map { Entry(backend: $0.key, pages: $0.value) }
        try container.encode(entries)
    }
}

/// A set of page indexes as sorted, disjoint, non-adjacent ranges: compact for the large runs
/// of holes a reclaim leaves. Encoded as `[[start, end], ...]` (end excluded); decoding checks
/// the order, so a damaged file cannot make overlapping holes count twice.
struct PageRanges: Codable, Equatable, Sendable {
    private(set) var ranges: [Range<Int>] = []

    init() {}

    /// The pages of `ranges`, in any order, overlapping or not.
    init(_ ranges: some Sequence<Range<Int>>) {
        for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) where !range.isEmpty {
            if let last = self.ranges.last, range.lowerBound <= last.upperBound {
                self.ranges[self.ranges.count - 1] = last.lowerBound..<max(last.upperBound, range.upperBound)
            } else {
                self.ranges.append(range)
            }
        }
    }

    var isEmpty: Bool { ranges.isEmpty }
    /// Pages in the set. O(ranges).
    var count: Int { ranges.reduce(0) { $0 + $1.count } }

    /// The pages within `window`, shifted so that the window starts at 0.
    func slice(_ window: Range<Int>) -> PageRanges {
        PageRanges(ranges.compactMap { range in
            let part = range.clamped(to: window)
            return part.isEmpty ? nil : (part.lowerBound - window.lowerBound)..<(part.upperBound - window.lowerBound)
        })
    }

    /// Replaces the pages within `window` with `pages` (relative to the window's start; pages
    /// past the window's end are dropped).
    mutating func replace(_ window: Range<Int>, with pages: PageRanges) {
        var kept: [Range<Int>] = []
        for range in ranges {
            if range.lowerBound < window.lowerBound { kept.append(range.lowerBound..<min(range.upperBound, window.lowerBound)) }
            if range.upperBound > window.upperBound { kept.append(max(range.lowerBound, window.upperBound)..<range.upperBound) }
        }
        let added = pages.ranges.compactMap { range -> Range<Int>? in
            let shifted = (range.lowerBound + window.lowerBound)..<(range.upperBound + window.lowerBound)
            let part = shifted.clamped(to: window)
            return part.isEmpty ? nil : part
        }
        self = PageRanges(kept + added)
    }

    init(from decoder: any Decoder) throws {
        let pairs = try decoder.singleValueContainer().decode([[Int]].self)
        var previousEnd = -1
        for pair in pairs {
            guard pair.count == 2, pair[0] >= 0, pair[0] < pair[1], pair[0] > previousEnd else {
                throw DecodingError.dataCorrupted(
                    .init(codingPath: decoder.codingPath, debugDescription: "page ranges must be [start, end] pairs in order, apart"))
            }
            ranges.append(pair[0]..<pair[1])
            previousEnd = pair[1]
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(ranges.map { [$0.lowerBound, $0.upperBound] })
    }
}

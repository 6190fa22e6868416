import Foundation
import SamepageCore
import SamepageModel
import Testing

/// The model's wire forms, one per type: names from one table each, defaults from the type.
/// (The protocol's bytes are pinned by SamepageControlTests' golden test.)
@Suite("Model wire forms")
struct WireFormTests {
    static func json(_ value: some Encodable) throws -> [String: Any] {
        let data = try JSONEncoder().encode(value)
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(text.utf8))
    }

    @Test("Counters: the kernel's names, in one table that printing and the wire share")
    func counterNames() throws {
        var counters = Counters()
        for (i, key) in Counters.CodingKeys.allCases.enumerated() { counters[key] = i + 1 }
        #expect(counters.named.map(\.0) == Counters.CodingKeys.allCases.map(\.rawValue))
        #expect(counters.named.map(\.1) == Array(1...Counters.CodingKeys.allCases.count))
        let object = try Self.json(counters)
        #expect(Set(object.keys) == Set(Counters.CodingKeys.allCases.map(\.rawValue)))
        #expect(object["pages_shared"] as? Int == counters.pagesShared)
        #expect(try JSONDecoder().decode(Counters.self, from: JSONEncoder().encode(counters)) == counters)
    }

    @Test("Counters of regions add up; full scans are the slowest region's")
    func accumulate() {
        var a = Counters()
        a.pagesScanned = 10
        a.fullScans = 4
        var b = Counters()
        b.pagesScanned = 5
        b.fullScans = 2
        var sum = Counters()
        sum.accumulate(a, first: true)
        sum.accumulate(b, first: false)
        #expect(sum.pagesScanned == 15)
        #expect(sum.fullScans == 2)
    }

    @Test("Run modes: one name each, the kernel's number on the wire next to it")
    func runModes() throws {
        #expect(RunMode.allCases.map(\.name) == ["stop", "merge", "unmerge"])
        for mode in RunMode.allCases { #expect(RunMode(name: mode.name) == mode) }
        #expect(RunMode(name: "2") == nil)
        let object = try Self.json(RunMode.unmerge)
        #expect(object["run"] as? Int == 2)
        #expect(object["run_mode"] as? String == "unmerge")
        #expect(try Self.decode(RunMode.self, #"{"run":0}"#) == .stop)
        #expect(throws: DecodingError.self) { try Self.decode(RunMode.self, #"{"run":3}"#) }
    }

    @Test("Tunables: the kernel's names, all required")
    func tunables() throws {
        let tunables = Tunables(pagesToScan: 1000)
        let object = try Self.json(tunables)
        #expect(Set(object.keys) == Set(Tunables.CodingKeys.allCases.map(\.rawValue)))
        #expect(try JSONDecoder().decode(Tunables.self, from: JSONEncoder().encode(tunables)) == tunables)
        #expect(throws: DecodingError.self) { try Self.decode(Tunables.self, #"{"pages_to_scan":1}"#) }
        #expect(TunableError(.pagesToScan, value: 0, expected: "at least 1").name == "pages_to_scan")
    }

    @Test("Missing keys take the type's own defaults")
    func defaults() throws {
        #expect(try Self.decode(ReclaimStatus.self, "{}") == ReclaimStatus())
        #expect(try Self.decode(GuestFacts.self, "{}") == GuestFacts())
        #expect(try Self.decode(GuestPolicy.self, #"{"mode":"zero"}"#) == GuestPolicy(mode: .zero))
        #expect(throws: DecodingError.self) { try Self.decode(GuestPolicy.self, "{}") }
        let stats = try Self.decode(
            DaemonStats.self,
            String(decoding: try JSONEncoder().encode(DaemonStats(tracking: 7)), as: UTF8.self))
        #expect(stats == DaemonStats(tracking: 7))
    }

    @Test("A guest round-trips, its counters and reclaim totals at top level")
    func guest() throws {
        var counters = Counters()
        counters.zeroPages = 3
        var guest = GuestStatus(
            name: "alpha", uuid: "u", state: "running", mapped: true, mode: .merge, counters: counters,
            regions: [RegionStatus(backend: "pc.ram", kind: "memfd", path: nil, bytes: 4096, pages: 1)])
        guest.reclaim.record(pauseMilliseconds: 3, overrun: false)
        let object = try Self.json(guest)
        #expect(object["zero_pages"] as? Int == 3)
        #expect(object["pauses"] as? Int == 1)
        #expect(object["reason"] is NSNull)
        #expect((object["reclaim"] as? [String: Any])?["pause_histogram"] as? [Int] == [0, 0, 1, 0, 0, 0, 0, 0])
        #expect(try JSONDecoder().decode(GuestStatus.self, from: JSONEncoder().encode(guest)) == guest)
    }

    @Test("The sharing matrix: names and UUIDs in parallel; a matrix that is not square is refused")
    func sharing() throws {
        let matrix = SharingMatrix(guests: [GuestIdentity(name: "a", uuid: "1")], stableNodes: [[5]])
        #expect(try JSONDecoder().decode(SharingMatrix.self, from: JSONEncoder().encode(matrix)) == matrix)
        // The cells are stable nodes: `stable_nodes`, and `pages` (the former name) alike.
        let object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(matrix)) as? [String: Any]
        #expect(object?["stable_nodes"] as? [[Int]] == [[5]])
        #expect(object?["pages"] as? [[Int]] == [[5]])
        let both = try Self.decode(SharingMatrix.self, #"{"guests":["a"],"stable_nodes":[[7]],"pages":[[5]]}"#)
        #expect(both.stableNodes == [[7]])
        let old = try Self.decode(SharingMatrix.self, #"{"guests":["a"],"pages":[[5]]}"#)
        #expect(old.guests == [GuestIdentity(name: "a", uuid: "")])
        #expect(throws: DecodingError.self) {
            try Self.decode(SharingMatrix.self, #"{"guests":["a","b"],"pages":[[5]]}"#)
        }
    }
}

extension DaemonStats {
    fileprivate init(tracking: Int) {
        self.init(counters: Counters(), run: .stop, tunables: Tunables(), trackingBytes: tracking, connected: true)
    }
}

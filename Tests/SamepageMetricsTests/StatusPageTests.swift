import Foundation
import SamepageCore
import SamepageModel
import SamepageMetrics
import Synchronization
import Testing

/// A snapshot of three guests (two sharing, one with a hostile name) and their matrix.
enum StatusFixture {
    static let hostile = "<b>evil</b>&\"x'"

    static var snapshot: AgentSnapshot {
        var snapshot = AgentSnapshot()
        snapshot.connected = true
        snapshot.run = .merge
        var web1 = guest("web1", uuid: "00000000-0000-0000-0000-00000000000a", group: "web", scanned: 262_144, shared: 20_000, reclaimed: 9_000)
        web1.counters.zeroPages = 30_000
        web1.attributedSharingBytes = 16_000 * 4096
        var web2 = guest("web2", uuid: "00000000-0000-0000-0000-00000000000b", group: "web", scanned: 262_144, shared: 12_000, reclaimed: 4_000)
        web2.reclaim.deferred = ReclaimDeferral(.cpuPressure, detail: "host CPU pressure 40.0% (limit 25.0%)")
        web2.counters.zeroPages = 8_000
        web2.attributedSharingBytes = 16_000 * 4096
        var db = guest(hostile, uuid: "00000000-0000-0000-0000-00000000000c", group: nil, scanned: 131_072, shared: 0, reclaimed: 1)
        db.source = .proxmox
        db.vmid = 104
        db.mode = .report
        snapshot.guests = [web1, web2, db]
        snapshot.counters.pagesSharing = web1.counters.pagesSharing + web2.counters.pagesSharing
        snapshot.counters.zeroPages = 38_000
        snapshot.reclaim.pagesHeld = 12_998
        snapshot.reclaim.pauses = 42
        return snapshot
    }

    static var sharing: SharingMatrix {
        let guests = snapshot.guests.map(\.identity)
        return SharingMatrix(guests: guests, stableNodes: [[5_000, 18_000, 0], [18_000, 3_000, 0], [0, 0, 700]])
    }
}

@Suite("Status page")
struct StatusPageTests {
    func page(perGuest: Bool, sharing: SharingMatrix? = StatusFixture.sharing) -> String {
        String(decoding: StatusPage.render(StatusFixture.snapshot, sharing: sharing, perGuest: perGuest, version: "9.9"), as: UTF8.self)
    }

    @Test("The host's summary, the guests and the heatmap, with the figures in bytes")
    func content() {
        let html = page(perGuest: true)
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(html.contains("samepaged 9.9"))
        // Three guests of 1 GiB; web1 and web2 each attributed 16,000 pages of sharing that only
        // private RAM could realise: 32,000 × 4 KiB = 125 MiB, 4.07% of 3 GiB.
        #expect(html.contains("<td>3 GiB</td>"))
        #expect(html.contains("<td>125 MiB (4.1%)</td>"))
        // Each guest's own: 62.5 MiB of 1 GiB = 6.1%.
        #expect(html.components(separatedBy: "<td>62.5 MiB (6.1%)</td>").count == 3)
        #expect(html.contains("<td>web1</td>"))
        #expect(html.contains("waits: cpu_pressure"))
        #expect(html.contains("proxmox 104"))
        // The heatmap: a header row and a row per guest; 18,000 pages are 70.3 MiB.
        #expect(html.contains("<table class=\"heatmap\">"))
        #expect(html.components(separatedBy: "title=\"18000 stable nodes\">70.3 MiB</td>").count == 3)
        #expect(html.components(separatedBy: "stable nodes\"").count == 10)
    }

    @Test("Names from outside are escaped, never markup")
    func escaping() {
        let html = page(perGuest: true)
        #expect(!html.contains("<b>evil"))
        #expect(html.contains("&lt;b&gt;evil&lt;/b&gt;&amp;&quot;x&#39;"))
    }

    @Test("With per-guest figures off, no guest's name, figure or sharing")
    func perGuestOff() {
        let html = page(perGuest: false)
        #expect(html.contains("per_guest = false"))
        #expect(!html.contains("web1"))
        #expect(!html.contains("evil"))
        #expect(!html.contains("heatmap\">"))
        #expect(!html.contains("00000000-"))
        // The host's figures stay.
        #expect(html.contains("<td>125 MiB (4.1%)</td>"))
    }

    @Test("Without a matrix, the page says so")
    func noMatrix() {
        let html = page(perGuest: true, sharing: nil)
        #expect(html.contains("No sharing matrix"))
        #expect(html.contains("<td>web1</td>"))
    }

    @Test("A recent value is computed once per age, then again")
    func recentValue() async throws {
        let calls = Counter()
        let value = RecentValue(maximumAge: .milliseconds(200)) { calls.next() }
        #expect(value.value == 1)
        #expect(value.value == 1)
        try await Task.sleep(for: .milliseconds(250))
        #expect(value.value == 2)
    }

    final class Counter: Sendable {
        private let count = Mutex(0)
        func next() -> Int { count.withLock { $0 += 1; return $0 } }
    }
}

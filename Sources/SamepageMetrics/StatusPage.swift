import Foundation
import SamepageCore
import SamepageModel
import Synchronization

/// samepaged's status page, served at `/` on the metrics listener: the host's summary, the
/// guests, and the sharing matrix as a heatmap. One self-contained HTML document (inline
/// style, no script, nothing fetched), refreshed by the browser every 10 seconds.
///
/// It obeys the same exposure rule as the per-guest series: with `perGuest` false
/// (`metrics.per_guest = false`) it shows the host's summary only, no guest's name, figure
/// or sharing. Every text from outside (guest names, trust groups, reasons) is escaped.
public enum StatusPage {
    /// The page for `snapshot`, with the sharing matrix when known (nil: not shown).
    public static func render(
        _ snapshot: AgentSnapshot, sharing: SharingMatrix?, perGuest: Bool, version: String
    ) -> [UInt8] {
        let stats = DaemonStats(snapshot)
        let savings = stats.savings
        var html = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8">
            <meta http-equiv="refresh" content="10">
            <title>samepaged status</title>
            <style>\(style)</style></head><body>
            <h1>samepaged \(escape(version))</h1>
            <section id="host"><h2>Host</h2><table class="summary">
            """
        let rows: [(String, String)] = [
            ("libvirt", snapshot.connected ? "connected" : "disconnected"),
            ("run mode", snapshot.run.name),
            ("guests", "\(snapshot.guests.count) known, \(stats.guestsMapped) mapped"),
            ("guest RAM", Savings.format(bytes: savings.guestRAMBytes)),
            ("freed now", "\(Savings.format(bytes: savings.freedBytes)) (gross \(Savings.format(bytes: savings.reclaimedBytes)), refaulted \(Savings.format(bytes: savings.refaultedBytes)))"),
            ("freeable now", Savings.format(bytes: savings.freeableBytes)),
            ("merged by the kernel", savings.kernelMergedBytes.map { Savings.format(bytes: $0) } ?? "nothing known"),
            ("duplicates only private RAM could realise", Self.share(savings.privateRAMOnlyBytes ?? 0, of: savings.guestRAMBytes)),
            ("samepaged", savings.agent.map { a in "\(Savings.format(bytes: a.residentBytes)) RSS" + (a.cpuRatio.map { String(format: ", %.1f%% CPU", $0 * 100) } ?? "") } ?? "not read yet"),
            ("reclaim pauses", "\(snapshot.reclaim.pauses) (\(snapshot.reclaim.guestSeenOverruns) over max_pause_ms as the guest saw them)"),
            ("unresumed pauses", "\(snapshot.unresumedPauses)"),
        ]
        for (name, value) in rows {
            html += "<tr><th>\(escape(name))</th><td>\(escape(value))</td></tr>\n"
        }
        html += "</table></section>\n"
        if perGuest {
            html += guests(snapshot.guests)
            html += heatmap(sharing)
        } else {
            html += "<p id=\"per-guest-off\">Per-guest figures are switched off on this endpoint (metrics.per_guest = false).</p>\n"
        }
        html += "<p class=\"foot\"><a href=\"/metrics\">/metrics</a></p></body></html>\n"
        return Array(html.utf8)
    }

    private static func guests(_ guests: [GuestStatus]) -> String {
        var html = """
            <section id="guests"><h2>Guests</h2><table class="guests">
            <tr><th>guest</th><th>source</th><th>state</th><th>mode</th><th>trust group</th><th>RAM</th>\
            <th>freed now</th><th>freeable now</th><th>duplicates only private RAM could realise</th><th>reclaim</th></tr>

            """
        for guest in guests.sorted(by: { $0.name < $1.name }) {
            let savings = Savings(guest)
            let reclaim: String
            if guest.reclaim.resumeFailure != nil {
                reclaim = "RESUME FAILING"
            } else if let deferred = guest.reclaim.deferred {
                reclaim = "waits: \(deferred.reason.rawValue)"
            } else {
                reclaim = guest.reclaim.eligible ? "eligible" : "not eligible"
            }
            let cells = [
                guest.name, guest.source.rawValue + (guest.vmid.map { " \($0)" } ?? ""), guest.mapped ? guest.state : "\(guest.state), not mapped",
                guest.mode.rawValue, guest.trustGroup ?? "(own)", Savings.format(bytes: savings.guestRAMBytes),
                Savings.format(bytes: savings.freedBytes), Savings.format(bytes: savings.freeableBytes),
                savings.privateRAMOnlyBytes.map { share($0, of: savings.guestRAMBytes) } ?? "(private RAM: the kernel's)", reclaim,
            ]
            html += "<tr>" + cells.map { "<td>\(escape($0))</td>" }.joined() + "</tr>\n"
        }
        return html + "</table></section>\n"
    }

    /// The matrix as a table whose cells are shaded by the bytes two guests share (the
    /// darkest, the largest figure of the matrix), the figure written in each.
    private static func heatmap(_ sharing: SharingMatrix?) -> String {
        var html = "<section id=\"sharing\"><h2>Sharing between guests</h2>\n"
        guard let sharing, !sharing.guests.isEmpty else {
            return html + "<p>No sharing matrix: no guest is mapped, or the agent did not answer in time.</p></section>\n"
        }
        let largest = max(1, sharing.stableNodes.flatMap { $0 }.max() ?? 1)
        html += "<table class=\"heatmap\"><tr><th></th>"
        html += sharing.guests.map { "<th class=\"col\">\(escape($0.name))</th>" }.joined() + "</tr>\n"
        for (i, row) in sharing.stableNodes.enumerated() {
            html += "<tr><th>\(escape(sharing.guests[i].name))</th>"
            for pages in row {
                let level = Double(pages) / Double(largest)
                let lightness = 97 - Int((level * 62).rounded())
                let ink = level > 0.55 ? "#fff" : "#111"
                html += "<td style=\"background:hsl(215,70%,\(lightness)%);color:\(ink)\" title=\"\(pages) stable nodes\">"
                html += escape(Savings.format(bytes: pages * pageSize)) + "</td>"
            }
            html += "</tr>\n"
        }
        return html + """
            </table><p class="note">Merged contents (stable nodes) shared by each pair of guests, in bytes of one copy; \
            the diagonal, a guest's own. Guests of different trust groups are never compared.</p></section>

            """
    }

    private static func share(_ bytes: Int, of total: Int) -> String {
        guard total > 0 else { return Savings.format(bytes: bytes) }
        return Savings.format(bytes: bytes) + String(format: " (%.1f%%)", Double(bytes) * 100 / Double(total))
    }

    /// Text made safe for HTML content and attribute values.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.count)
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }

    private static let style = """
        body{font-family:sans-serif;margin:1.5em;color:#111;background:#fff}
        h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}
        table{border-collapse:collapse}th,td{padding:.3em .6em;border:1px solid #ccc;text-align:left;white-space:nowrap}
        table.summary th{background:#f3f3f3;font-weight:normal}
        table.guests td:nth-child(n+6){text-align:right}
        table.heatmap td{text-align:center;min-width:6em}
        .note,.foot{color:#555;font-size:.9em}
        """
}

/// A value computed at most once per `maximumAge`, from any thread: the status page's sharing
/// matrix, whose computation walks every rmap item on the agent's thread, is not recomputed
/// for each request a client sends.
public final class RecentValue<Value: Sendable>: Sendable {
    private let maximumAge: Duration
    private let compute: @Sendable () -> Value
    private let cached = Mutex<(value: Value, at: ContinuousClock.Instant)?>(nil)

    /// A value recomputed by `compute` when the last one is older than `maximumAge`.
    public init(maximumAge: Duration, compute: @escaping @Sendable () -> Value) {
        self.maximumAge = maximumAge
        self.compute = compute
    }

    /// The last value if recent enough, else a new one (computed under the lock: concurrent
    /// callers wait for one computation rather than start their own).
    public var value: Value {
        cached.withLock { cached in
            let now = ContinuousClock.now
            if let cached, now - cached.at < maximumAge { return cached.value }
            let value = compute()
            cached = (value, now)
            return value
        }
    }
}

import SamepageCore
import SamepageModel

/// The table of `samepage list` and `samepage guests`: one row per guest, sizes in binary
/// units, narrow enough for a 100-column terminal with the usual guest names.
///
/// The UUID (36 columns) is left out unless asked for (`list --uuid`; `dominfo` always shows
/// it), and so are the backend and the page counters, which `dominfo` and `--json` give. A
/// guest that is not mapped has "-" for RAM; the lines below the table say why it is not,
/// and why a guest's reclaim is deferred.
///
/// | column | what |
/// |---|---|
/// | RAM | the guest's mapped RAM (its regions) |
/// | Sharing | what sharing would save: `pages_sharing` in bytes |
/// | Zero | zero pages found (`zero_pages`) in bytes, reclaimed or not |
/// | Reclaimed | bytes the backends gave back to reclaim (`bytes_reclaimed`) |
public struct GuestListTable: Sendable {
    /// The guests, one row each, in this order.
    public var guests: [GuestStatus]
    /// Whether the UUID column is shown.
    public var showsUUID: Bool

    /// The table of `guests`, with a UUID column when `showsUUID`.
    public init(_ guests: [GuestStatus], showsUUID: Bool = false) {
        self.guests = guests
        self.showsUUID = showsUUID
    }

    /// The table, then a line for each guest not mapped and each deferred reclaim.
    public var text: String {
        var columns: [TextTable.Column] = [.init("Name")]
        if showsUUID { columns.append(.init("UUID")) }
        columns += [
            .init("Source"), .init("State"), .init("Mode"), .init("Group"),
            .init("RAM", .right), .init("Sharing", .right), .init("Zero", .right), .init("Reclaimed", .right),
        ]
        let rows = guests.map { g -> [String] in
            let ram = g.regions.reduce(0) { $0 + $1.bytes }
            var row = [g.name]
            if showsUUID { row.append(g.uuid) }
            return row + [
                g.vmid.map { "\(g.source) \($0)" } ?? g.source.rawValue, g.state, g.mode.rawValue, g.trustGroup ?? "-",
                g.mapped ? bytesText(ram) : "-", pagesText(g.counters.pagesSharing), pagesText(g.counters.zeroPages),
                bytesText(g.reclaim.bytesReclaimed),
            ]
        }
        var lines = [TextTable(columns: columns, rows: rows).text]
        for g in guests {
            if let reason = g.reason { lines.append("\(g.name): not mapped: \(reason)") }
            if let deferred = g.reclaim.deferred { lines.append("\(g.name): reclaim deferred: \(deferred.detail)") }
        }
        return lines.joined(separator: "\n")
    }
}

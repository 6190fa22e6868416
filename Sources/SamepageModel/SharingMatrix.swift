/// Stable nodes (merged contents) shared between each pair of guests: `stableNodes[i][j]`
/// counts the nodes with pages in both guest i and guest j; the diagonal, a guest's own nodes.
/// Nodes, not pages: a node with many pages in each guest counts once.
public struct SharingMatrix: Sendable, Equatable {
    public var guests: [GuestIdentity]
    public var stableNodes: [[Int]]

    public init(guests: [GuestIdentity], stableNodes: [[Int]]) {
        self.guests = guests
        self.stableNodes = stableNodes
    }
}

/// The matrix's wire form (`sharing`): the guests' names and UUIDs as two arrays in the
/// matrix's order, and the rows under `stable_nodes` and, with the same values, under
/// `pages`, the key's name before it said what the cells count (kept for readers written
/// against it). A reader takes `stable_nodes`, else `pages`; takes missing UUIDs as empty; and
/// refuses a matrix that is not square over its guests.
extension SharingMatrix: Codable {
    public enum CodingKeys: String, CodingKey {
        case guests, uuids
        case stableNodes = "stable_nodes"
        /// The former name of ``stableNodes``, still written.
        case pages
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(guests.map(\.name), forKey: .guests)
        try c.encode(guests.map(\.uuid), forKey: .uuids)
        try c.encode(stableNodes, forKey: .stableNodes)
        try c.encode(stableNodes, forKey: .pages)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let names = try c.decode([String].self, forKey: .guests)
        let uuids = try c.decode(.uuids, or: Array(repeating: "", count: names.count))
        let nodes = try c.decodeIfPresent([[Int]].self, forKey: .stableNodes) ?? c.decode([[Int]].self, forKey: .pages)
        guard uuids.count == names.count, nodes.count == names.count, nodes.allSatisfy({ $0.count == names.count })
        else {
            throw DecodingError.dataCorruptedError(
                forKey: .stableNodes, in: c, debugDescription: "the sharing matrix is not square over its guests")
        }
        self.init(guests: zip(names, uuids).map { GuestIdentity(name: $0, uuid: $1) }, stableNodes: nodes)
    }
}

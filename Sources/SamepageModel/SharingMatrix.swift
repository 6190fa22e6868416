/// Stable nodes (merged contents) shared between each pair of guests: `pages[i][j]` counts
/// the nodes with members in both guest i and guest j; the diagonal, a guest's own nodes.
public struct SharingMatrix: Sendable, Equatable {
    public var guests: [GuestIdentity]
    public var pages: [[Int]]

    public init(guests: [GuestIdentity], pages: [[Int]]) {
        self.guests = guests
        self.pages = pages
    }
}

/// The matrix's wire form (`sharing`): the guests' names and UUIDs as two arrays in the
/// matrix's order, and the rows. A reader takes missing UUIDs as empty and refuses a matrix
/// that is not square over its guests.
extension SharingMatrix: Codable {
    public enum CodingKeys: String, CodingKey {
        case guests, uuids, pages
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(guests.map(\.name), forKey: .guests)
        try c.encode(guests.map(\.uuid), forKey: .uuids)
        try c.encode(pages, forKey: .pages)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let names = try c.decode([String].self, forKey: .guests)
        let uuids = try c.decode(.uuids, or: Array(repeating: "", count: names.count))
        let pages = try c.decode([[Int]].self, forKey: .pages)
        guard uuids.count == names.count, pages.count == names.count, pages.allSatisfy({ $0.count == names.count })
        else {
            throw DecodingError.dataCorruptedError(
                forKey: .pages, in: c, debugDescription: "the sharing matrix is not square over its guests")
        }
        self.init(guests: zip(names, uuids).map { GuestIdentity(name: $0, uuid: $1) }, pages: pages)
    }
}

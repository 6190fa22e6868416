/// A guest as libvirt names it.
///
/// Not on the wire by itself: objects that name a guest carry `name` and `uuid` as keys of
/// their own (the sharing matrix, as two parallel arrays).
public struct GuestIdentity: Sendable, Hashable {
    public var name: String
    /// Lower-case, with dashes.
    public var uuid: String

    public init(name: String, uuid: String) {
        self.name = name
        self.uuid = uuid
    }
}

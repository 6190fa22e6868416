import SamepageCore

extension SharingMatrix {
    /// The matrix of these guests, in this order, read from the engine: `slots[i]` are the
    /// regions of `guests[i]`. What the daemon answers to `sharing`.
    /// - Complexity: that of ``Engine/sharingMatrix(of:)``.
    public init(guests: [GuestIdentity], slots: [[SlotID]], in engine: Engine) {
        precondition(guests.count == slots.count, "\(guests.count) guests, \(slots.count) lists of slots")
        self.init(guests: guests, stableNodes: engine.sharingMatrix(of: slots))
    }
}

import Libvirt

/// libvirt's words turned into the agent's, at the libvirt edge (``LibvirtLink``, reconcile).
extension GuestRunState {
    /// A domain's state as libvirt lists it (`virDomainState`).
    init(_ state: DomainState) {
        switch state {
        case .noState: self = .noState
        case .running: self = .running
        case .blocked: self = .blocked
        case .paused: self = .paused
        case .shuttingDown: self = .shuttingDown
        case .shutoff: self = .shutOff
        case .crashed: self = .crashed
        case .pmSuspended: self = .pmSuspended
        case .unknown: self = .other(state.description)
        }
    }
}

extension TrackedGuest {
    /// One of libvirt's domains, as libvirt listed it.
    convenience init(_ info: DomainInfo) {
        self.init(libvirtDomain: info.name, uuid: info.uuid, id: info.id, state: GuestRunState(info.state))
    }
}

extension GuestMonitorEvent {
    /// One of libvirt's QEMU monitor events; nil for any but `STOP` and `RESUME`.
    init?(_ event: QemuMonitorEvent) {
        guard let kind = Kind(qemuName: event.name) else { return nil }
        self.init(uuid: event.uuid, kind: kind, timestamp: event.timestamp)
    }
}

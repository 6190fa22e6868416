import Foundation
import Libvirt

/// The one place that picks how a guest is paused: over its own QMP socket for a QEMU
/// outside libvirt (``QMPPauseTransport``), through libvirtd for libvirt's guests
/// (``LibvirtPauseTransport``), with the timeouts of each. A namespace: it holds nothing.
enum PauseTransportChoice {
    /// How long `stop` over QMP may take: QEMU replies once block I/O is drained and flushed.
    static let stopTimeout: Duration = .seconds(10)

    /// The transport of the next pause of `guest`, and its timeouts; nil when it cannot be
    /// paused now (no QMP socket; libvirt's guest while libvirtd is not connected).
    static func transport(
        for guest: TrackedGuest, connection: LibvirtConnection?, agent: Agent
    ) -> (any PauseTransport, PauseTimeouts)? {
        let configuration = agent.configuration
        let uuid = guest.uuid
        if let handle = guest.qemu {
            let timeout = Duration.milliseconds(configuration.qemuGuests.qmpTimeoutMs)
            let transport = QMPPauseTransport(handle: handle, timeout: timeout) { events in
                for case let event? in events.map({ GuestMonitorEvent($0, of: uuid) }) { agent.deliver(event) }
            }
            return transport.map { ($0, PauseTimeouts(call: timeout, suspend: stopTimeout)) }
        }
        guard let connection else { return nil }
        let transport = LibvirtPauseTransport(connection: connection, uuid: uuid, domainID: guest.domainID) {
            agent.stateEvents(of: uuid)
        }
        return (transport, PauseTimeouts(call: configuration.libvirtCallTimeout, suspend: configuration.libvirtCallTimeout))
    }
}

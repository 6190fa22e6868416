import CLibvirt
import Foundation

/// An event from a guest's QEMU monitor, passed through by libvirt's QEMU driver
/// (`virConnectDomainQemuMonitorEventRegister`), with QEMU's own timestamp.
///
/// QEMU stamps `STOP` when its vCPUs have stopped and `RESUME` when they run again, with the
/// host's wall clock: the two give the pause the guest itself saw, without libvirtd's and
/// the RPC's share of a suspend or resume call.
public struct QemuMonitorEvent: Sendable, Hashable {
    public var uuid: UUID
    /// The event's QMP name, such as `STOP` or `RESUME`.
    public var name: String
    /// QEMU's timestamp, in seconds since the epoch (wall clock, microsecond resolution).
    public var timestamp: Double

    public init(uuid: UUID, name: String, timestamp: Double) {
        self.uuid = uuid
        self.name = name
        self.timestamp = timestamp
    }
}

extension LibvirtConnection {
    /// Delivers the QEMU monitor events named in `names` (exact QMP names) of every domain to
    /// `handler`, until the returned subscription is dropped.
    ///
    /// Receiving events does not taint a domain (only sending monitor commands does). The
    /// handler runs on libvirt's event thread and must return quickly.
    ///
    /// - Throws: ``LibvirtError`` when the driver has no QEMU monitor (not the QEMU driver).
    public func observeQemuMonitorEvents(
        _ names: [String], _ handler: @escaping @Sendable (QemuMonitorEvent) -> Void
    ) throws(LibvirtError) -> QemuMonitorSubscription {
        let context = MonitorEventContext(handler: handler)
        var subscription = QemuMonitorSubscription(connection: pointer)
        for name in names {
            let opaque = Unmanaged.passRetained(context).toOpaque()
            let id = virConnectDomainQemuMonitorEventRegister(pointer, nil, name, monitorCallback, opaque, releaseMonitorContext, 0)
            guard id >= 0 else {
                Unmanaged<MonitorEventContext>.fromOpaque(opaque).release()
                throw .last("virConnectDomainQemuMonitorEventRegister(\(name))")
            }
            subscription.callbackIDs.append(id)
        }
        return subscription
    }
}

/// Keeps QEMU monitor event callbacks registered; dropping it deregisters them. Holds its own
/// reference to the libvirt connection.
public struct QemuMonitorSubscription: ~Copyable, @unchecked Sendable {
    let connection: OpaquePointer
    var callbackIDs: [Int32] = []

    init(connection: OpaquePointer) {
        virConnectRef(connection)
        self.connection = connection
    }

    deinit {
        // Deregistering on a dead connection fails; nothing is left to undo then.
        for id in callbackIDs { _ = virConnectDomainQemuMonitorEventDeregister(connection, id) }
        virResetLastError()
        virConnectClose(connection)
    }
}

final class MonitorEventContext: Sendable {
    let handler: @Sendable (QemuMonitorEvent) -> Void
    init(handler: @escaping @Sendable (QemuMonitorEvent) -> Void) { self.handler = handler }
}

private let monitorCallback: @convention(c) (
    OpaquePointer?, OpaquePointer?, UnsafePointer<CChar>?, Int64, UInt32, UnsafePointer<CChar>?, UnsafeMutableRawPointer?
) -> Void = { _, domain, event, seconds, micros, _, opaque in
    guard let domain, let event, let opaque, let uuid = try? LibvirtConnection.uuid(of: domain) else { return }
    let context = Unmanaged<MonitorEventContext>.fromOpaque(opaque).takeUnretainedValue()
    context.handler(QemuMonitorEvent(uuid: uuid, name: String(cString: event), timestamp: Double(seconds) + Double(micros) / 1e6))
}

private let releaseMonitorContext: @convention(c) (UnsafeMutableRawPointer?) -> Void = { opaque in
    guard let opaque else { return }
    Unmanaged<MonitorEventContext>.fromOpaque(opaque).release()
}

extension LibvirtConnection {
    /// Sends one QMP command to the domain's QEMU monitor through libvirt's QEMU driver
    /// (`virDomainQemuMonitorCommand`) and returns QEMU's reply, a JSON object as text.
    ///
    /// libvirt marks the domain tainted (`custom-monitor`, in its log and the domain's log):
    /// it cannot know what the command changed. Samepage sends only `query-memdev` and
    /// `qom-set` of a memory backend's `merge` property.
    public func qemuMonitorCommand(uuid: UUID, _ command: String) throws(LibvirtError) -> String {
        try withDomain(uuid) { domain throws(LibvirtError) in
            var reply: UnsafeMutablePointer<CChar>?
            guard virDomainQemuMonitorCommand(domain, command, &reply, 0) == 0, let reply else {
                throw .last("virDomainQemuMonitorCommand")
            }
            defer { free(reply) }
            return String(cString: reply)
        }
    }
}

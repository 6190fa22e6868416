import CLibvirt
import Foundation

/// What happened to a domain, from libvirt's lifecycle and device events.
public enum DomainEvent: Sendable, Hashable {
    /// QEMU started (booted, restored, incoming migration finished, from a snapshot).
    case started
    /// QEMU is gone; its RAM backends should be released at once.
    case stopped(StopReason)
    /// The guest OS panicked. QEMU may still run (the domain is then paused or crashed).
    case crashed
    /// The vCPUs were paused (by anyone, for any reason, including guest power management).
    case suspended
    /// The vCPUs run again.
    case resumed
    /// The domain finished migrating to another host; QEMU here is gone.
    case migratedAway
    /// A device was hot-plugged (e.g. a DIMM or virtio-mem device), named by its alias.
    case deviceAdded(alias: String)
    /// A device was unplugged, named by its alias.
    case deviceRemoved(alias: String)

    /// Why QEMU stopped (`virDomainEventStoppedDetailType`).
    public enum StopReason: Sendable, Hashable {
        case shutdown, destroyed, crashed, saved, failed, fromSnapshot
        case other(Int32)
    }

    /// Maps a `VIR_DOMAIN_EVENT_ID_LIFECYCLE` event and detail; nil for events that do not
    /// concern a running guest (defined, undefined, shutdown-in-progress).
    init?(lifecycleEvent event: Int32, detail: Int32) {
        func named<T: RawRepresentable>(_ value: T) -> Int32 where T.RawValue: BinaryInteger { Int32(value.rawValue) }
        switch event {
        case named(VIR_DOMAIN_EVENT_STARTED):
            self = detail == named(VIR_DOMAIN_EVENT_STARTED_WAKEUP) ? .resumed : .started
        case named(VIR_DOMAIN_EVENT_SUSPENDED), named(VIR_DOMAIN_EVENT_PMSUSPENDED):
            self = .suspended
        case named(VIR_DOMAIN_EVENT_RESUMED):
            self = .resumed
        case named(VIR_DOMAIN_EVENT_STOPPED):
            switch detail {
            case named(VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN): self = .stopped(.shutdown)
            case named(VIR_DOMAIN_EVENT_STOPPED_DESTROYED): self = .stopped(.destroyed)
            case named(VIR_DOMAIN_EVENT_STOPPED_CRASHED): self = .stopped(.crashed)
            case named(VIR_DOMAIN_EVENT_STOPPED_MIGRATED): self = .migratedAway
            case named(VIR_DOMAIN_EVENT_STOPPED_SAVED): self = .stopped(.saved)
            case named(VIR_DOMAIN_EVENT_STOPPED_FAILED): self = .stopped(.failed)
            case named(VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT): self = .stopped(.fromSnapshot)
            default: self = .stopped(.other(detail))
            }
        case named(VIR_DOMAIN_EVENT_CRASHED):
            self = .crashed
        default:
            // DEFINED, UNDEFINED, SHUTDOWN (in progress): nothing for a running guest.
            return nil
        }
    }
}

/// A domain event together with the domain it happened to.
public struct DomainEventNotification: Sendable, Hashable {
    public var uuid: UUID
    public var name: String
    public var event: DomainEvent
}

/// Why libvirt closed a connection (`virConnectCloseReason`).
public enum ConnectionCloseReason: Sendable, Hashable {
    /// A read or write error on the socket.
    case error
    /// libvirtd closed the connection (stopped, restarted, crashed).
    case endOfFile
    /// libvirtd stopped answering keepalive messages.
    case keepaliveTimeout
    /// The client closed the connection.
    case client
    case other(Int32)

    init(rawValue: Int32) {
        switch rawValue {
        case Int32(VIR_CONNECT_CLOSE_REASON_ERROR.rawValue): self = .error
        case Int32(VIR_CONNECT_CLOSE_REASON_EOF.rawValue): self = .endOfFile
        case Int32(VIR_CONNECT_CLOSE_REASON_KEEPALIVE.rawValue): self = .keepaliveTimeout
        case Int32(VIR_CONNECT_CLOSE_REASON_CLIENT.rawValue): self = .client
        default: self = .other(rawValue)
        }
    }
}

extension LibvirtConnection {
    /// Delivers lifecycle and device events of every domain to `handler`, and the end of the
    /// connection to `onClose`, until the returned subscription is dropped.
    ///
    /// Both run on libvirt's event thread: they must return quickly and not call back into
    /// libvirt synchronously; hand the work to the daemon's own threads. After `onClose`,
    /// no more events arrive on this connection: open a new one.
    public func observeEvents(
        _ handler: @escaping @Sendable (DomainEventNotification) -> Void,
        onClose: @escaping @Sendable (ConnectionCloseReason) -> Void
    ) throws(LibvirtError) -> EventSubscription {
        let context = EventContext(handler: handler, onClose: onClose)
        var subscription = EventSubscription(connection: pointer)
        let registrations: [(Int32, virConnectDomainEventGenericCallback)] = [
            (Int32(VIR_DOMAIN_EVENT_ID_LIFECYCLE.rawValue), unsafeBitCast(lifecycleCallback, to: virConnectDomainEventGenericCallback.self)),
            (Int32(VIR_DOMAIN_EVENT_ID_DEVICE_ADDED.rawValue), unsafeBitCast(deviceAddedCallback, to: virConnectDomainEventGenericCallback.self)),
            (Int32(VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED.rawValue), unsafeBitCast(deviceRemovedCallback, to: virConnectDomainEventGenericCallback.self)),
        ]
        for (eventID, callback) in registrations {
            // Each registration holds its own retain, released by libvirt through `releaseContext`.
            let opaque = Unmanaged.passRetained(context).toOpaque()
            let id = virConnectDomainEventRegisterAny(pointer, nil, eventID, callback, opaque, releaseContext)
            guard id >= 0 else {
                Unmanaged<EventContext>.fromOpaque(opaque).release()
                throw .last("virConnectDomainEventRegisterAny(\(eventID))")
            }
            subscription.callbackIDs.append(id)
        }
        let opaque = Unmanaged.passRetained(context).toOpaque()
        guard virConnectRegisterCloseCallback(pointer, closeCallback, opaque, releaseContext) == 0 else {
            Unmanaged<EventContext>.fromOpaque(opaque).release()
            throw .last("virConnectRegisterCloseCallback")
        }
        subscription.hasCloseCallback = true
        return subscription
    }
}

/// Keeps event callbacks registered on a connection; dropping it deregisters them.
///
/// It holds its own reference to the libvirt connection, so it may outlive the
/// `LibvirtConnection` it came from.
public struct EventSubscription: ~Copyable, @unchecked Sendable {
    let connection: OpaquePointer
    var callbackIDs: [Int32] = []
    var hasCloseCallback = false

    init(connection: OpaquePointer) {
        virConnectRef(connection)
        self.connection = connection
    }

    deinit {
        // Deregistering on a dead connection fails; nothing is left to undo then.
        for id in callbackIDs { _ = virConnectDomainEventDeregisterAny(connection, id) }
        if hasCloseCallback { _ = virConnectUnregisterCloseCallback(connection, closeCallback) }
        virResetLastError()
        virConnectClose(connection)
    }
}

final class EventContext: Sendable {
    let handler: @Sendable (DomainEventNotification) -> Void
    let onClose: @Sendable (ConnectionCloseReason) -> Void

    init(handler: @escaping @Sendable (DomainEventNotification) -> Void,
         onClose: @escaping @Sendable (ConnectionCloseReason) -> Void) {
        self.handler = handler
        self.onClose = onClose
    }

    static func deliver(_ event: DomainEvent?, domain: OpaquePointer?, opaque: UnsafeMutableRawPointer?) {
        guard let event, let domain, let opaque, let name = virDomainGetName(domain),
              let uuid = try? LibvirtConnection.uuid(of: domain)
        else { return }
        let context = Unmanaged<EventContext>.fromOpaque(opaque).takeUnretainedValue()
        context.handler(DomainEventNotification(uuid: uuid, name: String(cString: name), event: event))
    }
}

private let lifecycleCallback: @convention(c) (OpaquePointer?, OpaquePointer?, Int32, Int32, UnsafeMutableRawPointer?) -> Void = {
    _, domain, event, detail, opaque in
    EventContext.deliver(DomainEvent(lifecycleEvent: event, detail: detail), domain: domain, opaque: opaque)
}

private let deviceAddedCallback: @convention(c) (OpaquePointer?, OpaquePointer?, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Void = {
    _, domain, alias, opaque in
    EventContext.deliver(alias.map { .deviceAdded(alias: String(cString: $0)) }, domain: domain, opaque: opaque)
}

private let deviceRemovedCallback: @convention(c) (OpaquePointer?, OpaquePointer?, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Void = {
    _, domain, alias, opaque in
    EventContext.deliver(alias.map { .deviceRemoved(alias: String(cString: $0)) }, domain: domain, opaque: opaque)
}

private let closeCallback: @convention(c) (OpaquePointer?, Int32, UnsafeMutableRawPointer?) -> Void = { _, reason, opaque in
    guard let opaque else { return }
    Unmanaged<EventContext>.fromOpaque(opaque).takeUnretainedValue().onClose(ConnectionCloseReason(rawValue: reason))
}

private let releaseContext: @convention(c) (UnsafeMutableRawPointer?) -> Void = { opaque in
    guard let opaque else { return }
    Unmanaged<EventContext>.fromOpaque(opaque).release()
}

import CLibvirt
import Foundation

/// A connection to a libvirt hypervisor driver, closed when the last reference goes.
///
/// libvirt connections are thread-safe, so one connection may be used from several threads.
/// Every call blocks (most are a round trip to libvirtd): call them from the daemon's own
/// threads, never from Swift's cooperative pool.
public final class LibvirtConnection: @unchecked Sendable {
    let pointer: OpaquePointer
    /// The URI this connection was opened with.
    public let uri: String

    /// Opens a read-write connection, by default to the local system QEMU driver.
    ///
    /// The first connection in a process also silences libvirt's printing of errors to
    /// stderr and starts libvirt's event loop on a thread of its own (needed for events and
    /// keepalive). Connections through libvirtd get a keepalive of 5 s × 3, so a hung or dead
    /// libvirtd is noticed by the close callback of `observeEvents`.
    public init(uri: String = "qemu:///system") throws(LibvirtError) {
        LibvirtRuntime.ready
        guard let pointer = virConnectOpen(uri) else { throw .last("virConnectOpen(\(uri))") }
        self.pointer = pointer
        self.uri = uri
        // Fails on drivers without a daemon (test:///); that is fine.
        if virConnectSetKeepAlive(pointer, 5, 3) < 0 { virResetLastError() }
    }

    deinit { virConnectClose(pointer) }

    /// Whether the connection still reaches its driver.
    public var isAlive: Bool { virConnectIsAlive(pointer) == 1 }

    /// Whether the URI names another host (`qemu+ssh://host/system`): guest memory then lives
    /// on that host and cannot be mapped from here.
    public var isRemote: Bool {
        guard let host = URL(string: uri)?.host else { return false }
        return !host.isEmpty && host != "localhost"
    }

    /// The domains that are active (running, paused, ...), not the defined but shut-off ones.
    public func activeDomains() throws(LibvirtError) -> [DomainInfo] {
        var list: UnsafeMutablePointer<OpaquePointer?>?
        let count = virConnectListAllDomains(pointer, &list, UInt32(VIR_CONNECT_LIST_DOMAINS_ACTIVE.rawValue))
        guard count >= 0 else { throw .last("virConnectListAllDomains") }
        let handles = (0..<Int(count)).compactMap { list?[$0] }
        free(list)
        var result: [DomainInfo] = []
        var failure: LibvirtError?
        for handle in handles {
            defer { virDomainFree(handle) }
            do {
                result.append(try Self.info(of: handle))
            } catch where error.isNoDomain {
                continue  // Exited while we listed.
            } catch {
                failure = failure ?? error
            }
        }
        if let failure { throw failure }
        return result
    }

    /// The domain's identity and state.
    public func domainInfo(uuid: UUID) throws(LibvirtError) -> DomainInfo {
        try withDomain(uuid) { domain throws(LibvirtError) in try Self.info(of: domain) }
    }

    /// The domain's XML description (of the live definition when it runs).
    public func domainXML(uuid: UUID, inactive: Bool = false) throws(LibvirtError) -> String {
        try withDomain(uuid) { domain throws(LibvirtError) in
            let flags = inactive ? UInt32(VIR_DOMAIN_XML_INACTIVE.rawValue) : 0
            guard let xml = virDomainGetXMLDesc(domain, flags) else { throw .last("virDomainGetXMLDesc") }
            defer { free(xml) }
            return String(cString: xml)
        }
    }

    /// The domain's live definition, parsed.
    public func domainDefinition(uuid: UUID) throws -> DomainDefinition {
        try DomainDefinition(xml: domainXML(uuid: uuid))
    }

    /// Pauses the domain's vCPUs (and, in QEMU, its block I/O and vhost-user rings).
    public func suspend(uuid: UUID) throws(LibvirtError) {
        try withDomain(uuid) { domain throws(LibvirtError) in
            guard virDomainSuspend(domain) == 0 else { throw .last("virDomainSuspend") }
        }
    }

    /// Resumes a paused domain.
    public func resume(uuid: UUID) throws(LibvirtError) {
        try withDomain(uuid) { domain throws(LibvirtError) in
            guard virDomainResume(domain) == 0 else { throw .last("virDomainResume") }
        }
    }

    /// Whether a job (migration, save, dump, snapshot, ...) is running on the domain.
    public func hasActiveJob(uuid: UUID) throws(LibvirtError) -> Bool {
        try withDomain(uuid) { domain throws(LibvirtError) in
            var job = virDomainJobInfo()
            guard virDomainGetJobInfo(domain, &job) == 0 else { throw .last("virDomainGetJobInfo") }
            return job.type == Int32(VIR_DOMAIN_JOB_BOUNDED.rawValue)
                || job.type == Int32(VIR_DOMAIN_JOB_UNBOUNDED.rawValue)
        }
    }

    /// Creates and starts a transient domain from its XML (for tests and tools).
    @discardableResult
    public func createDomain(xml: String) throws(LibvirtError) -> DomainInfo {
        guard let domain = virDomainCreateXML(pointer, xml, 0) else { throw .last("virDomainCreateXML") }
        defer { virDomainFree(domain) }
        return try Self.info(of: domain)
    }

    /// Stops the domain at once (`virsh destroy`).
    public func destroy(uuid: UUID) throws(LibvirtError) {
        try withDomain(uuid) { domain throws(LibvirtError) in
            guard virDomainDestroy(domain) == 0 else { throw .last("virDomainDestroy") }
        }
    }

    func withDomain<T>(_ uuid: UUID, _ body: (OpaquePointer) throws(LibvirtError) -> T) throws(LibvirtError) -> T {
        guard let domain = virDomainLookupByUUIDString(pointer, uuid.uuidString.lowercased()) else {
            throw .last("virDomainLookupByUUIDString(\(uuid.uuidString.lowercased()))")
        }
        defer { virDomainFree(domain) }
        return try body(domain)
    }

    static func uuid(of domain: OpaquePointer) throws(LibvirtError) -> UUID {
        var bytes = [UInt8](repeating: 0, count: Int(VIR_UUID_BUFLEN))
        guard virDomainGetUUID(domain, &bytes) == 0 else { throw .last("virDomainGetUUID") }
        return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                           bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    }

    static func info(of domain: OpaquePointer) throws(LibvirtError) -> DomainInfo {
        guard let name = virDomainGetName(domain) else { throw .last("virDomainGetName") }
        var state: Int32 = 0
        var reason: Int32 = 0
        guard virDomainGetState(domain, &state, &reason, 0) == 0 else { throw .last("virDomainGetState") }
        let id = virDomainGetID(domain)
        let domainState = DomainState(rawValue: state)
        return DomainInfo(
            name: String(cString: name),
            uuid: try uuid(of: domain),
            id: id == UInt32.max ? nil : id,
            state: domainState,
            pausedReason: domainState == .paused ? PausedReason(rawValue: reason) : nil
        )
    }
}

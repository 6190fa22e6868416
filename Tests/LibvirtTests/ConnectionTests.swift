import Foundation
import Synchronization
import Testing
@testable import Libvirt

/// Against libvirt's built-in test driver (`test:///default`): no daemon, no guests, but the
/// same API, states and lifecycle events. Its state is shared by every connection in the
/// process, so each test works on a transient domain of its own.
@Suite struct ConnectionTests {
    static func transientDomainXML(_ name: String) -> String {
        """
        <domain type='test'>
          <name>\(name)</name>
          <uuid>\(UUID().uuidString.lowercased())</uuid>
          <memory unit='MiB'>64</memory>
          <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>
          <os><type arch='x86_64'>hvm</type></os>
        </domain>
        """
    }

    @Test func listsTheTestDriversDomain() throws {
        let connection = try LibvirtConnection(uri: "test:///default")
        #expect(connection.isAlive)
        #expect(!connection.isRemote)
        let domains = try connection.activeDomains()
        let test = try #require(domains.first { $0.name == "test" })
        #expect(test.uuid == UUID(uuidString: "6695eb01-f6a4-8304-79aa-97f2502e193f"))
        #expect(test.id != nil)
        let definition = try connection.domainDefinition(uuid: test.uuid)
        #expect(definition.name == "test" && definition.memoryKiB == 8 << 20)
    }

    @Test func suspendAndResume() throws {
        let connection = try LibvirtConnection(uri: "test:///default")
        let domain = try connection.createDomain(xml: Self.transientDomainXML("suspend-\(UUID().uuidString.prefix(8))"))
        defer { try? connection.destroy(uuid: domain.uuid) }
        #expect(domain.state == .running && domain.pausedReason == nil)
        #expect(try connection.activeDomains().contains { $0.uuid == domain.uuid })
        #expect(try connection.domainDefinition(uuid: domain.uuid).memoryBacking == MemoryBacking(source: .memfd, access: .shared))

        try connection.suspend(uuid: domain.uuid)
        let paused = try connection.domainInfo(uuid: domain.uuid)
        #expect(paused.state == .paused && paused.pausedReason == .user)
        try connection.resume(uuid: domain.uuid)
        #expect(try connection.domainInfo(uuid: domain.uuid).state == .running)

        // The test driver calls this an internal error; QEMU's driver says operation invalid.
        let error = #expect(throws: LibvirtError.self) { try connection.resume(uuid: domain.uuid) }
        #expect(error?.message.contains("not paused") == true)
    }

    @Test func errorsCarryLibvirtsCodeAndMessage() throws {
        let connection = try LibvirtConnection(uri: "test:///default")
        let missing = UUID()
        let error = #expect(throws: LibvirtError.self) { try connection.suspend(uuid: missing) }
        #expect(error?.isNoDomain == true)
        #expect(error?.message.lowercased().contains("domain") == true)
        #expect(error?.operation.hasPrefix("virDomainLookupByUUIDString") == true)

        let badURI = #expect(throws: LibvirtError.self) { try LibvirtConnection(uri: "nosuchdriver:///nowhere") }
        #expect(badURI?.message.isEmpty == false)
        #expect(badURI?.code != 0)
    }

    @Test func remoteURIs() throws {
        #expect(URL(string: "qemu+ssh://host.example/system")?.host == "host.example")
        let connection = try LibvirtConnection(uri: "test:///default")
        #expect(!connection.isRemote)
    }

    @Test func lifecycleEvents() throws {
        let connection = try LibvirtConnection(uri: "test:///default")
        let received = Mutex<[DomainEventNotification]>([])
        let closed = Mutex<[ConnectionCloseReason]>([])
        let subscription = try connection.observeEvents({ notice in
            received.withLock { $0.append(notice) }
        }, onClose: { reason in
            closed.withLock { $0.append(reason) }
        })

        let name = "events-\(UUID().uuidString.prefix(8))"
        let domain = try connection.createDomain(xml: Self.transientDomainXML(name))
        try connection.suspend(uuid: domain.uuid)
        try connection.resume(uuid: domain.uuid)
        try connection.destroy(uuid: domain.uuid)

        let expected: [DomainEvent] = [.started, .suspended, .resumed, .stopped(.destroyed)]
        let deadline = Date().addingTimeInterval(10)
        func ours() -> [DomainEventNotification] { received.withLock { $0.filter { $0.uuid == domain.uuid } } }
        while ours().count < expected.count && Date() < deadline { usleep(10_000) }
        #expect(ours().map(\.event) == expected)
        #expect(ours().allSatisfy { $0.name == name })
        #expect(closed.withLock { $0.isEmpty })

        // Dropping the subscription stops delivery.
        _ = consume subscription
        let other = try connection.createDomain(xml: Self.transientDomainXML("quiet-\(UUID().uuidString.prefix(8))"))
        try connection.destroy(uuid: other.uuid)
        usleep(200_000)
        #expect(received.withLock { !$0.contains { $0.uuid == other.uuid } })
    }
}

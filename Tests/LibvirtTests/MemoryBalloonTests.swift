import Foundation
import Libvirt
import Testing

/// `<memballoon>`: the device and its free page reporting, for `samepage advise`.
@Suite struct MemoryBalloonTests {
    static func domain(devices: String) -> String {
        """
        <domain type='kvm'>
          <name>b1</name>
          <uuid>63f32358-36dc-49d7-8bce-72dbf78f5f04</uuid>
          <memory unit='KiB'>262144</memory>
          <devices>
            \(devices)
          </devices>
        </domain>
        """
    }

    @Test func freePageReportingOn() throws {
        let d = try DomainDefinition(xml: Self.domain(devices: "<memballoon model='virtio' freePageReporting='on'><alias name='balloon0'/></memballoon>"))
        #expect(d.memoryBalloon == MemoryBalloon(model: "virtio", freePageReporting: true))
    }

    @Test func aBalloonWithoutReporting() throws {
        let off = try DomainDefinition(xml: Self.domain(devices: "<memballoon model='virtio' freePageReporting='off'/>"))
        #expect(off.memoryBalloon == MemoryBalloon(model: "virtio", freePageReporting: false))
        let unsaid = try DomainDefinition(xml: Self.domain(devices: "<memballoon model='virtio-non-transitional'/>"))
        #expect(unsaid.memoryBalloon == MemoryBalloon(model: "virtio-non-transitional", freePageReporting: false))
    }

    @Test func noBalloon() throws {
        #expect(try DomainDefinition(xml: Self.domain(devices: "<memballoon model='none'/>")).memoryBalloon == nil)
        #expect(try DomainDefinition(xml: Self.domain(devices: "")).memoryBalloon == nil)
    }
}

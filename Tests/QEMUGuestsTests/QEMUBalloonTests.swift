@testable import QEMUGuests
import Testing

/// A QEMU's balloon device, for `samepage advise`, in both option syntaxes.
@Suite("QEMU balloon")
struct QEMUBalloonTests {
    static func commandLine(_ devices: [String]) -> QEMUGuestCommandLine {
        QEMUGuestCommandLine(arguments: ["/usr/bin/qemu-system-x86_64", "-m", "1024"] + devices.flatMap { ["-device", $0] }, proxmoxRunDirectories: [])
    }

    @Test func freePageReportingOn() {
        // As Proxmox VE writes it, with free page reporting asked for.
        let line = Self.commandLine(["virtio-balloon-pci,id=balloon0,bus=pci.0,addr=0x3,free-page-reporting=on"])
        #expect(line.balloon == QEMUBalloon(driver: "virtio-balloon-pci", freePageReporting: true))
    }

    @Test func jsonSyntaxAndReportingOff() {
        let on = Self.commandLine([#"{"driver":"virtio-balloon-pci","id":"balloon0","free-page-reporting":true}"#])
        #expect(on.balloon == QEMUBalloon(driver: "virtio-balloon-pci", freePageReporting: true))
        let off = Self.commandLine([#"{"driver":"virtio-balloon-pci","id":"balloon0","free-page-reporting":false}"#])
        #expect(off.balloon == QEMUBalloon(driver: "virtio-balloon-pci", freePageReporting: false))
        #expect(Self.commandLine(["virtio-balloon-ccw"]).balloon == QEMUBalloon(driver: "virtio-balloon-ccw", freePageReporting: false))
    }

    @Test func noBalloon() {
        #expect(Self.commandLine(["virtio-net-pci,netdev=n0"]).balloon == nil)
        #expect(Self.commandLine([]).balloon == nil)
    }
}

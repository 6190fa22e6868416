import LinuxSystem
@testable import QEMUGuests
import Testing

@Suite("Proxmox VM config")
struct ProxmoxVMConfigTests {
    static let running = """
        #Web front end
        #  second line of the description
        boot: order=scsi0;net0
        cores: 2
        hostpci0: 0000:01:00.0,pcie=1
        hostpci2: 0000:02:00.0
        hugepages: 2
        memory: 4096
        name: web
        net0: virtio=BC:24:11:00:00:01,bridge=vmbr0
        smbios1: uuid=6f2c3a4e-1b2d-4c5e-9f80-a1b2c3d4e5f6

        virtiofs0: share,cache=auto
        vmgenid: 1b6e2c1a-0000-4000-8000-000000000000

        [before-upgrade]
        lock: snapshot
        hostpci1: 0000:03:00.0
        name: web-old
        snaptime: 1700000000
        """

    @Test("The main section only: a snapshot's lock and keys do not count; comments and blank lines skipped")
    func mainSection() {
        let config = ProxmoxVMConfig(text: Self.running)
        #expect(config.lock == nil)
        #expect(config.name == "web")
        #expect(config.hugepages == "2")
        #expect(config.hostPCIDevices == [0, 2])
        #expect(config.virtiofsShares == [0])
        #expect(config.values["net0"] == "virtio=BC:24:11:00:00:01,bridge=vmbr0")
        #expect(config.values["snaptime"] == nil)
        #expect(config.values.count == 11)
    }

    @Test("A lock in the main section is an operation under way")
    func locked() {
        let config = ProxmoxVMConfig(text: "lock: backup\r\nmemory: 2048\r\nname: db\r\n\n[PENDING]\nmemory: 8192\n")
        #expect(config.lock == "backup")
        #expect(config.values["memory"] == "2048")
        #expect(config.name == "db")
        #expect(config.hostPCIDevices.isEmpty)
    }

    @Test("Read from DIRECTORY/VMID.conf; a guest without one is ENOENT")
    func read() throws {
        let directory = TemporaryDirectory()
        directory.write("101.conf", "lock: migrate\nname: web\n")
        let config = try ProxmoxVMConfig.read(vmid: 101, directory: directory.path)
        #expect(config.lock == "migrate")
        #expect(throws: SystemError.self) { try ProxmoxVMConfig.read(vmid: 102, directory: directory.path) }
        do { _ = try ProxmoxVMConfig.read(vmid: 102, directory: directory.path) } catch {
            #expect(error.errno == .noSuchFileOrDirectory)
        }
    }
}

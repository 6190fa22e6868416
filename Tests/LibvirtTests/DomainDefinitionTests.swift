import Glibc
import Foundation
import Testing
@testable import Libvirt

/// What libvirt 9.0 printed (`virsh dumpxml`) for a running TCG test guest with shared memfd
/// RAM on this kind of host (scripts/testhost/guest.sh).
let memfdGuestXML = """
<domain type='qemu' id='19'>
  <name>sp-e2e-d1</name>
  <uuid>63f32358-36dc-49d7-8bce-72dbf78f5f04</uuid>
  <description>Samepage test guest (scripts/testhost/guest.sh): ram=memfd workload=idle fill=0</description>
  <memory unit='KiB'>262144</memory>
  <currentMemory unit='KiB'>262144</currentMemory>
  <memoryBacking>
    <source type='memfd'/>
    <access mode='shared'/>
  </memoryBacking>
  <vcpu placement='static'>1</vcpu>
  <resource>
    <partition>/machine</partition>
  </resource>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <kernel>/var/lib/samepage-testhost/vmlinuz</kernel>
    <initrd>/var/lib/samepage-testhost/guest-initrd.img</initrd>
    <cmdline>console=ttyS0 quiet loglevel=1 panic=-1 samepage.workload=idle samepage.fill=0</cmdline>
    <boot dev='hd'/>
  </os>
  <cpu mode='custom' match='exact' check='full'>
    <model fallback='forbid'>qemu64</model>
    <feature policy='require' name='hypervisor'/>
    <feature policy='require' name='lahf_lm'/>
  </cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' index='0' model='none'/>
    <controller type='pci' index='0' model='pci-root'>
      <alias name='pci.0'/>
    </controller>
    <serial type='file'>
      <source path='/var/lib/samepage-testhost/serial/sp-e2e-d1.log'/>
      <target type='isa-serial' port='0'>
        <model name='isa-serial'/>
      </target>
      <alias name='serial0'/>
    </serial>
    <console type='file'>
      <source path='/var/lib/samepage-testhost/serial/sp-e2e-d1.log'/>
      <target type='serial' port='0'/>
      <alias name='serial0'/>
    </console>
    <input type='mouse' bus='ps2'>
      <alias name='input0'/>
    </input>
    <input type='keyboard' bus='ps2'>
      <alias name='input1'/>
    </input>
    <audio id='1' type='none'/>
    <memballoon model='none'/>
  </devices>
  <seclabel type='dynamic' model='dac' relabel='yes'>
    <label>+0:+0</label>
    <imagelabel>+0:+0</imagelabel>
  </seclabel>
</domain>
"""

/// A NFV-style guest: hugepages, two NUMA cells, hot-pluggable memory, and every device that
/// keeps writing while the guest is paused.
let busyGuestXML = """
<domain type='kvm'>
  <name>nfv-1</name>
  <uuid>6695EB01-F6A4-8304-79AA-97F2502E193F</uuid>
  <maxMemory slots='16' unit='GiB'>64</maxMemory>
  <memory unit='GiB'>5</memory>
  <currentMemory unit='MiB'>4096</currentMemory>
  <memoryBacking>
    <hugepages>
      <page size='2' unit='M' nodeset='0'/>
      <page size='1048576' nodeset='1'/>
    </hugepages>
    <nosharepages/>
    <locked/>
    <source type='file'/>
    <access mode='private'/>
    <allocation mode='immediate' threads='4'/>
    <discard/>
  </memoryBacking>
  <cpu mode='host-passthrough'>
    <numa>
      <cell id='0' cpus='0-1' memory='2' unit='GiB' memAccess='shared'/>
      <cell id='1' cpus='2-3' memory='2097152'/>
    </numa>
  </cpu>
  <devices>
    <memory model='dimm' access='shared'>
      <source>
        <pagesize unit='KiB'>2048</pagesize>
      </source>
      <target>
        <size unit='MiB'>512</size>
        <node>0</node>
      </target>
      <alias name='dimm0'/>
      <address type='dimm' slot='0'/>
    </memory>
    <memory model='virtio-mem'>
      <target>
        <size unit='KiB'>524288</size>
        <node>1</node>
        <block unit='KiB'>2048</block>
        <requested unit='KiB'>262144</requested>
        <current unit='KiB'>131072</current>
      </target>
      <alias name='virtiomem0'/>
    </memory>
    <memory model='nvdimm'>
      <source>
        <path>/var/lib/pmem/nvdimm0.img</path>
      </source>
      <target>
        <size unit='KiB'>0</size>
        <node>0</node>
      </target>
    </memory>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source>
        <address domain='0x0000' bus='0x03' slot='0x00' function='0x1'/>
      </source>
      <alias name='hostdev0'/>
    </hostdev>
    <interface type='hostdev' managed='yes'>
      <source>
        <address type='pci' domain='0x0000' bus='0x04' slot='0x10' function='0x0'/>
      </source>
      <alias name='hostdev1'/>
    </interface>
    <interface type='vdpa'>
      <source dev='/dev/vhost-vdpa-0'/>
      <alias name='net1'/>
    </interface>
    <interface type='vhostuser'>
      <mac address='52:54:00:3b:83:1a'/>
      <source type='unix' path='/run/openvswitch/vhu0' mode='server'/>
      <model type='virtio'/>
      <alias name='net2'/>
    </interface>
    <interface type='network'>
      <source network='default'/>
      <alias name='net0'/>
    </interface>
    <disk type='vhostuser' device='disk' snapshot='no'>
      <driver name='qemu' type='raw'/>
      <source type='unix' path='/tmp/vhost-blk.sock'/>
      <target dev='vdb' bus='virtio'/>
      <alias name='virtio-disk1'/>
    </disk>
    <shmem name='my_shmem0'>
      <model type='ivshmem-plain'/>
      <size unit='M'>4</size>
      <alias name='shmem0'/>
    </shmem>
    <filesystem type='mount' accessmode='passthrough'>
      <driver type='virtiofs' queue='1024'/>
      <binary path='/usr/libexec/virtiofsd'/>
      <source dir='/srv/share'/>
      <target dir='share'/>
      <alias name='fs0'/>
    </filesystem>
    <filesystem type='mount'>
      <driver type='virtiofs'/>
      <source socket='/run/virtiofsd/fs1.sock'/>
      <target dir='external'/>
    </filesystem>
    <filesystem type='mount' accessmode='mapped'>
      <driver type='path'/>
      <source dir='/srv/9p'/>
      <target dir='ninep'/>
    </filesystem>
  </devices>
  <launchSecurity type='sev'>
    <cbitpos>47</cbitpos>
    <reducedPhysBits>1</reducedPhysBits>
    <policy>0x0003</policy>
  </launchSecurity>
</domain>
"""

/// A guest with DMA-capable devices outside `<hostdev>`: an NVMe disk on QEMU's userspace
/// driver, a vhost-vdpa disk, a VFIO device and an object added through `<qemu:commandline>`,
/// and a `<qemu:override>`, as libvirt 9 prints them (the namespace declared on the root).
let passthroughGuestXML = """
<domain type='kvm' id='7' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>storage-1</name>
  <uuid>0b6f8a3e-5f0c-4a57-9d43-2a9e8b3c1d20</uuid>
  <memory unit='KiB'>4194304</memory>
  <currentMemory unit='KiB'>4194304</currentMemory>
  <memoryBacking>
    <source type='memfd'/>
    <access mode='shared'/>
  </memoryBacking>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/storage-1.qcow2' index='3'/>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
    </disk>
    <disk type='nvme' device='disk'>
      <driver name='qemu' type='raw'/>
      <source type='pci' managed='yes' namespace='1' index='2'>
        <address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
      </source>
      <target dev='vdb' bus='virtio'/>
      <alias name='virtio-disk1'/>
    </disk>
    <disk type='vhostvdpa' device='disk'>
      <driver name='qemu' type='raw' cache='none' io='threads' copy_on_read='off' discard='unmap'/>
      <source dev='/dev/vhost-vdpa-2' index='1'/>
      <target dev='vdc' bus='virtio'/>
      <alias name='virtio-disk2'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
      <alias name='sata0-0-0'/>
    </disk>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-msg'/>
    <qemu:arg value='timestamp=on'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='vfio-pci,host=0000:01:00.0,id=hostdev9'/>
    <qemu:arg value='-object'/>
    <qemu:arg value='{"qom-type":"memory-backend-file","id":"extra","mem-path":"/dev/shm/extra","size":1048576,"share":true}'/>
    <qemu:arg value='--netdev=tap,id=tap9,vhost=on'/>
    <qemu:arg value='-set'/>
    <qemu:arg value='device.virtio-disk0.iommu_platform=on'/>
    <qemu:env name='G_MESSAGES_DEBUG' value='all'/>
  </qemu:commandline>
  <qemu:override>
    <qemu:device alias='virtio-disk0'>
      <qemu:frontend>
        <qemu:property name='ats' type='bool' value='true'/>
      </qemu:frontend>
    </qemu:device>
  </qemu:override>
</domain>
"""

@Suite struct DomainDefinitionTests {
    @Test func memfdGuest() throws {
        let domain = try DomainDefinition(xml: memfdGuestXML)
        #expect(domain.name == "sp-e2e-d1")
        #expect(domain.uuid == UUID(uuidString: "63f32358-36dc-49d7-8bce-72dbf78f5f04"))
        #expect(domain.type == "qemu")
        #expect(domain.memoryKiB == 262_144)
        #expect(domain.currentMemoryKiB == 262_144)
        #expect(domain.memoryBacking == MemoryBacking(source: .memfd, access: .shared))
        #expect(domain.numaCells.isEmpty && domain.memoryDevices.isEmpty)
        #expect(domain.hostDevices.isEmpty && domain.vdpaInterfaces.isEmpty && domain.vhostUserDevices.isEmpty)
        #expect(domain.sharedMemoryDevices.isEmpty && domain.virtiofsFilesystems.isEmpty)
        #expect(domain.nvmeDisks.isEmpty && domain.vdpaDisks.isEmpty)
        #expect(domain.commandLineDevices.isEmpty && domain.deviceOverrides.isEmpty)
        #expect(domain.launchSecurity == nil)
        #expect(domain.ramRegions == [RAMRegion(backendID: nil, sizeKiB: 262_144, source: .main)])
    }

    @Test("Reading XML keeps nothing: 3 × 1,000 readings of a guest's XML leave the process's memory about as it was (FoundationXML's XMLDocument kept 25 KB each, 50 MB)")
    func readingLeaksNothing() throws {
        func residentBytes() -> Int {
            let statm = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? ""
            return (Int(statm.split(separator: " ").dropFirst().first ?? "") ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
        }
        for _ in 0..<50 { _ = try DomainDefinition(xml: busyGuestXML) }  // first-use allocations out of the way
        // Three rounds of 1,000: a leak of that size grows every round by 25 MB, while other
        // tests running in this process meanwhile grow one round or another, not all three.
        var rounds: [Int] = []
        for _ in 0..<3 {
            let before = residentBytes()
            for _ in 0..<1000 { _ = try DomainDefinition(xml: busyGuestXML) }
            rounds.append(residentBytes() - before)
        }
        #expect(rounds.min()! < 8 << 20, "resident memory grew by \(rounds) bytes in three rounds of 1,000 readings")
    }

    @Test func anonymousGuestHasDefaultBacking() throws {
        let xml = memfdGuestXML.replacingOccurrences(
            of: "  <memoryBacking>\n    <source type='memfd'/>\n    <access mode='shared'/>\n  </memoryBacking>\n", with: "")
        let domain = try DomainDefinition(xml: xml)
        #expect(domain.memoryBacking == MemoryBacking())
        #expect(domain.memoryBacking.source == nil && domain.memoryBacking.access == nil)
    }

    @Test func busyGuest() throws {
        let domain = try DomainDefinition(xml: busyGuestXML)
        #expect(domain.uuid == UUID(uuidString: "6695eb01-f6a4-8304-79aa-97f2502e193f"))
        #expect(domain.memoryKiB == 5 << 20)
        #expect(domain.currentMemoryKiB == 4 << 20)

        let backing = domain.memoryBacking
        #expect(backing.source == .file && backing.access == .private)
        #expect(backing.hugepages)
        #expect(backing.hugepageSizes == [.init(sizeKiB: 2048, nodeset: "0"), .init(sizeKiB: 1 << 20, nodeset: "1")])
        #expect(backing.locked && backing.preallocated && backing.discard && backing.noSharePages)

        #expect(domain.numaCells == [
            NUMACell(id: 0, memoryKiB: 2 << 20, access: .shared),
            NUMACell(id: 1, memoryKiB: 2 << 20, access: nil),
        ])
        #expect(domain.memoryDevices == [
            MemoryDevice(model: .dimm, alias: "dimm0", sizeKiB: 512 << 10, node: 0, access: .shared,
                         sourcePath: nil, pageSizeKiB: 2048, requestedKiB: nil, currentKiB: nil),
            MemoryDevice(model: .virtioMem, alias: "virtiomem0", sizeKiB: 512 << 10, node: 1, access: nil,
                         sourcePath: nil, pageSizeKiB: nil, requestedKiB: 256 << 10, currentKiB: 128 << 10),
            MemoryDevice(model: .nvdimm, alias: nil, sizeKiB: 0, node: 0, access: nil,
                         sourcePath: "/var/lib/pmem/nvdimm0.img", pageSizeKiB: nil, requestedKiB: nil, currentKiB: nil),
        ])
        #expect(domain.hostDevices == [HostDevice(type: "pci", alias: "hostdev0"), HostDevice(type: "interface", alias: "hostdev1")])
        #expect(domain.vdpaInterfaces == [VDPAInterface(alias: "net1", devicePath: "/dev/vhost-vdpa-0")])
        #expect(domain.vhostUserDevices == [
            VhostUserDevice(kind: .interface, alias: "net2", socketPath: "/run/openvswitch/vhu0", mode: "server"),
            VhostUserDevice(kind: .disk, alias: "virtio-disk1", socketPath: "/tmp/vhost-blk.sock", mode: nil),
        ])
        #expect(domain.sharedMemoryDevices == [SharedMemoryDevice(name: "my_shmem0", model: "ivshmem-plain", sizeKiB: 4096, alias: "shmem0")])
        #expect(domain.virtiofsFilesystems == [
            VirtiofsFilesystem(alias: "fs0", target: "share", sourceDirectory: "/srv/share", socketPath: nil),
            VirtiofsFilesystem(alias: nil, target: "external", sourceDirectory: nil, socketPath: "/run/virtiofsd/fs1.sock"),
        ])
        #expect(domain.launchSecurity == "sev")
        #expect(domain.ramRegions == [
            RAMRegion(backendID: "ram-node0", sizeKiB: 2 << 20, source: .numaCell(0)),
            RAMRegion(backendID: "ram-node1", sizeKiB: 2 << 20, source: .numaCell(1)),
            RAMRegion(backendID: "memdimm0", sizeKiB: 512 << 10, source: .memoryDevice(.dimm, alias: "dimm0")),
            RAMRegion(backendID: "memvirtiomem0", sizeKiB: 512 << 10, source: .memoryDevice(.virtioMem, alias: "virtiomem0")),
            RAMRegion(backendID: nil, sizeKiB: 0, source: .memoryDevice(.nvdimm, alias: nil)),
        ])
    }

    @Test func passthroughGuest() throws {
        let domain = try DomainDefinition(xml: passthroughGuestXML)
        #expect(domain.nvmeDisks == [NVMeDisk(alias: "virtio-disk1", pciAddress: "0000:01:00.0", namespace: 1)])
        #expect(domain.vdpaDisks == [VDPADisk(alias: "virtio-disk2", devicePath: "/dev/vhost-vdpa-2")])
        #expect(domain.commandLineDevices == [
            "-device vfio-pci,host=0000:01:00.0,id=hostdev9",
            #"-object {"qom-type":"memory-backend-file","id":"extra","mem-path":"/dev/shm/extra","size":1048576,"share":true}"#,
            "--netdev=tap,id=tap9,vhost=on",
            "-set device.virtio-disk0.iommu_platform=on",
        ])
        #expect(domain.deviceOverrides == ["virtio-disk0"])
        // The other disks are none of these.
        #expect(domain.vhostUserDevices.isEmpty && domain.hostDevices.isEmpty && domain.vdpaInterfaces.isEmpty)
    }

    @Test("The QEMU namespace is found by its URI, whatever its prefix")
    func otherNamespacePrefix() throws {
        let xml = passthroughGuestXML
            .replacingOccurrences(of: "xmlns:qemu=", with: "xmlns:q=")
            .replacingOccurrences(of: "<qemu:", with: "<q:").replacingOccurrences(of: "</qemu:", with: "</q:")
        let domain = try DomainDefinition(xml: xml)
        #expect(domain.commandLineDevices.count == 4)
        #expect(domain.commandLineDevices.first == "-device vfio-pci,host=0000:01:00.0,id=hostdev9")
        #expect(domain.deviceOverrides == ["virtio-disk0"])
    }

    @Test("A document that forgot to declare the namespace still has its qemu: elements seen")
    func undeclaredNamespace() throws {
        let xml = passthroughGuestXML.replacingOccurrences(of: " xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'", with: "")
        #expect(!xml.contains("xmlns"))
        let domain = try DomainDefinition(xml: xml)
        #expect(domain.commandLineDevices.first == "-device vfio-pci,host=0000:01:00.0,id=hostdev9")
        #expect(domain.deviceOverrides == ["virtio-disk0"])
    }

    @Test("Elements in another namespace, spelled like QEMU's, are not QEMU's")
    func foreignNamespace() throws {
        let xml = passthroughGuestXML
            .replacingOccurrences(of: "xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'",
                                  with: "xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0' xmlns:x='urn:example'")
            .replacingOccurrences(of: "<qemu:commandline>", with: "<x:commandline>")
            .replacingOccurrences(of: "</qemu:commandline>", with: "</x:commandline>")
        let domain = try DomainDefinition(xml: xml)
        #expect(domain.commandLineDevices.isEmpty)
        #expect(domain.deviceOverrides == ["virtio-disk0"])
    }

    @Test("-set and -global count (they change devices libvirt made); -msg, -trace and -d do not", arguments: [
        (["-msg", "timestamp=on"], []),
        (["-msg=timestamp=on", "-trace", "enable=qemu_vfio*", "-d", "guest_errors", "-D", "/tmp/q.log"], []),
        (["-global", "virtio-blk-pci.iommu_platform=on"], ["-global virtio-blk-pci.iommu_platform=on"]),
        (["-set", "device.net0.rombar=0", "-msg", "timestamp=on"], ["-set device.net0.rombar=0"]),
        (["-device", "vfio-pci,host=0000:01:00.0"], ["-device vfio-pci,host=0000:01:00.0"]),
        (["-device=vfio-pci,host=01:00.0", "--device", "vhost-vdpa-device-pci,vhostdev=/dev/vhost-vdpa-0"],
         ["-device=vfio-pci,host=01:00.0", "--device vhost-vdpa-device-pci,vhostdev=/dev/vhost-vdpa-0"]),
        (["-netdev", "vhost-vdpa,vhostdev=/dev/vhost-vdpa-1,id=v1"], ["-netdev vhost-vdpa,vhostdev=/dev/vhost-vdpa-1,id=v1"]),
        (["-object", "iommufd,id=iommufd0"], ["-object iommufd,id=iommufd0"]),
        (["-chardev", "socket,id=c,path=/tmp/vu.sock", "-drive", "file=/x.img,if=none,id=d"],
         ["-chardev socket,id=c,path=/tmp/vu.sock", "-drive file=/x.img,if=none,id=d"]),
        (["-blockdev", "driver=nvme,device=0000:02:00.0,namespace=1,node-name=n"],
         ["-blockdev driver=nvme,device=0000:02:00.0,namespace=1,node-name=n"]),
        (["-numa", "node,memdev=m0", "-mem-path", "/dev/hugepages"], ["-numa node,memdev=m0", "-mem-path /dev/hugepages"]),
        (["-fsdev", "local,id=f,path=/srv", "-virtfs", "local,path=/srv,mount_tag=t"],
         ["-fsdev local,id=f,path=/srv", "-virtfs local,path=/srv,mount_tag=t"]),
        // An option this code does not know counts, with its value; so does a stray argument
        // (QEMU takes it for a disk image), and a value that looks like an option after one
        // that takes a value is that option's value.
        (["-overcommit", "mem-lock=on", "-S"], ["-overcommit mem-lock=on", "-S"]),
        (["/var/lib/images/extra.img"], ["/var/lib/images/extra.img"]),
        (["-msg", "-device"], []),
    ] as [([String], [String])])
    func commandLineArguments(arguments: [String], devices: [String]) {
        #expect(DomainDefinition.commandLineDevices(arguments) == devices)
    }

    @Test(arguments: [
        ("1024", nil, 1024), ("1024", "KiB", 1024), ("1024", "k", 1024), ("2", "M", 2048), ("2", "MiB", 2048),
        ("1", "G", 1 << 20), ("1", "GiB", 1 << 20), ("1", "T", 1 << 30), ("4096", "b", 4), ("4097", "bytes", 5),
        ("1000", "KB", 977), ("1", "MB", 977), ("1", "GB", 976_563),
    ] as [(String, String?, UInt64)])
    func units(value: String, unit: String?, kib: UInt64) throws {
        #expect(try DomainDefinition.kibibytes(value, unit: unit) == kib)
    }

    @Test func rejectsBadInput() {
        #expect(throws: DomainDefinitionError.self) { try DomainDefinition(xml: "<domain><name>x</name>") }
        #expect(throws: DomainDefinitionError.self) { try DomainDefinition(xml: "<network><name>x</name></network>") }
        #expect(throws: DomainDefinitionError.self) {
            try DomainDefinition(xml: memfdGuestXML.replacingOccurrences(of: "unit='KiB'>262144</memory>", with: "unit='furlong'>1</memory>"))
        }
        #expect(throws: DomainDefinitionError.self) {
            try DomainDefinition(xml: memfdGuestXML.replacingOccurrences(of: "<uuid>63f32358", with: "<uuid>zz5e1a2b"))
        }
        #expect(throws: DomainDefinitionError.self) {
            try DomainDefinition(xml: memfdGuestXML.replacingOccurrences(of: "type='memfd'", with: "type='pixie-dust'"))
        }
        #expect(throws: DomainDefinitionError.self) { try DomainDefinition.kibibytes("-1", unit: nil) }
        #expect(throws: DomainDefinitionError.self) { try DomainDefinition.kibibytes("99999999999", unit: "EiB") }
    }

    /// Inputs the fuzzer found crashing (Fuzz/regressions/domain_xml): each is an error now.
    /// FoundationXML crashed on text libxml2 reads as empty.
    @Test func fuzzRegressions() throws {
        #expect(throws: DomainDefinitionError.self) { try DomainDefinition(xml: "") }
        #expect(throws: DomainDefinitionError.self) { try DomainDefinition(xml: "\0<domain/>") }
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fuzz/regressions/domain_xml")
        let inputs = try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
        #expect(!inputs.isEmpty)
        for input in inputs {
            _ = try? DomainDefinition(xml: String(decoding: try Data(contentsOf: input), as: UTF8.self))
        }
    }
}

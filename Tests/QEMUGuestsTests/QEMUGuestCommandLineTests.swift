import Foundation
import GuestMemory
@testable import QEMUGuests
import Testing

@Suite("QEMU guest command lines")
struct QEMUGuestCommandLineTests {
    /// How qemu-server begins every guest's command line: its VMID, name, QMP socket and
    /// qmeventd's, pid file, in its run directory (`/var/run/qemu-server/` or `/run/…`).
    static func proxmoxHead(vmid: Int, name: String, run: String) -> [String] {
        [
            "/usr/bin/kvm", "-id", "\(vmid)", "-name", "\(name),debug-threads=on", "-no-shutdown",
            "-chardev", "socket,id=qmp,path=\(run)/\(vmid).qmp,server=on,wait=off",
            "-mon", "chardev=qmp,mode=control",
            "-chardev", "socket,id=qmp-event,path=/var/run/qmeventd.sock,reconnect=5",
            "-mon", "chardev=qmp-event,mode=control",
            "-pidfile", "\(run)/\(vmid).pid", "-daemonize",
        ]
    }

    /// As Proxmox VE 8's qemu-server starts a guest with a virtiofs share (its RAM in a
    /// shared memfd), abridged.
    static let proxmoxMemfd = proxmoxHead(vmid: 101, name: "web", run: "/var/run/qemu-server") + [
        "-smbios", "type=1,uuid=6f2c3a4e-1b2d-4c5e-9f80-a1b2c3d4e5f6",
        "-smp", "2,sockets=1,cores=2,maxcpus=2", "-nodefaults",
        "-boot", "menu=on,strict=on,reboot-timeout=1000,splash=/usr/share/qemu-server/bootsplash.jpg",
        "-vnc", "unix:/var/run/qemu-server/101.vnc,password=on",
        "-cpu", "kvm64,enforce,+kvm_pv_eoi,+kvm_pv_unhalt,+lahf_lm,+sep",
        "-m", "2048",
        "-object", "memory-backend-memfd,id=virtiofs-mem,size=2048M,share=on",
        "-object", "iothread,id=iothread-virtioscsi0",
        "-chardev", "socket,id=virtiofs0,path=/run/virtiofsd/101-share.sock",
        "-device", "vhost-user-fs-pci,chardev=virtiofs0,tag=share,queue-size=1024",
        "-device", "virtio-balloon-pci,id=balloon0,bus=pci.0,addr=0x3,free-page-reporting=on",
        "-drive", "file=/dev/pve/vm-101-disk-0,if=none,id=drive-scsi0,format=raw,cache=none,aio=io_uring",
        "-device", "scsi-hd,bus=scsihw0.0,channel=0,scsi-id=0,lun=0,drive=drive-scsi0,id=scsi0,bootindex=100",
        "-machine", "type=pc+pve0,memory-backend=virtiofs-mem",
    ]

    /// A Proxmox guest on 2 MiB huge pages with a passed-through PCI device and memory
    /// hotplug, no smbios1 (so no UUID), in /run rather than /var/run.
    static let proxmoxHugepages = proxmoxHead(vmid: 102, name: "db,,prod", run: "/run/qemu-server") + [
        "-m", "size=4096,slots=255,maxmem=524288M",
        "-object", "memory-backend-file,id=ram-node0,size=4096M,mem-path=/run/hugepages/kvm/2048kB,share=on,prealloc=yes",
        "-numa", "node,nodeid=0,cpus=0-3,memdev=ram-node0",
        "-device", "vfio-pci,host=0000:01:00.0,id=hostpci0,bus=pci.0,addr=0x10",
        "-machine", "type=q35+pve0",
    ]

    @Test("Proxmox with a memfd: name, smbios UUID, VMID, its QMP socket but not qmeventd's, the backend")
    func proxmoxMemfd() {
        let line = QEMUGuestCommandLine(arguments: Self.proxmoxMemfd)
        #expect(line.program == "/usr/bin/kvm")
        #expect(line.name == "web")
        #expect(line.uuid == UUID(uuidString: "6F2C3A4E-1B2D-4C5E-9F80-A1B2C3D4E5F6"))
        #expect(line.pidFile == "/var/run/qemu-server/101.pid")
        #expect(line.source == .proxmox(vmid: 101))
        #expect(line.monitors == [.unixServer("/var/run/qemu-server/101.qmp")])
        #expect(line.connectableMonitors == ["/var/run/qemu-server/101.qmp"])
        #expect(line.memoryBackends == [MemoryBackendObject(id: "virtiofs-mem", kind: .memfd, size: 2048 << 20, shared: true)])
        #expect(line.ramSize == 2048 << 20)
        #expect(line.vhostUserSockets == ["/run/virtiofsd/101-share.sock"])
        #expect(line.devices.isEmpty)
        #expect(!line.memoryLocked)
        #expect(!line.memPrealloc)
        #expect(line.key?.description == "6f2c3a4e-1b2d-4c5e-9f80-a1b2c3d4e5f6")
    }

    @Test("Proxmox on huge pages: the file backend, the VFIO device, and the VMID as key without a UUID")
    func proxmoxHugepages() {
        let line = QEMUGuestCommandLine(arguments: Self.proxmoxHugepages)
        #expect(line.name == "db,prod")
        #expect(line.uuid == nil)
        #expect(line.source == .proxmox(vmid: 102))
        #expect(line.key == .proxmox(vmid: 102))
        #expect(line.key?.description == "proxmox:102")
        #expect(line.monitors == [.unixServer("/run/qemu-server/102.qmp")])
        #expect(line.memoryBackends == [
            MemoryBackendObject(id: "ram-node0", kind: .file, size: 4096 << 20, shared: true,
                                memPath: "/run/hugepages/kvm/2048kB", prealloc: true),
        ])
        #expect(line.ramSize == 4096 << 20)
        #expect(line.devices == [QEMUGuestDevice(kind: .vfio, option: "-device", driver: "vfio-pci", id: "hostpci0")])
    }

    @Test("-id alone, or a qemu-server path of another VMID, is not Proxmox's")
    func proxmoxNeedsBoth() {
        #expect(QEMUGuestCommandLine(arguments: ["kvm", "-id", "7", "-pidfile", "/tmp/7.pid"]).source == .qemu)
        #expect(QEMUGuestCommandLine(arguments: ["kvm", "-id", "7", "-pidfile", "/run/qemu-server/8.pid"]).source == .qemu)
        #expect(QEMUGuestCommandLine(arguments: ["kvm", "-pidfile", "/run/qemu-server/8.pid"]).source == .qemu)
        #expect(QEMUGuestCommandLine(arguments: ["kvm", "-id", "8", "-pidfile", "/run/qemu-server/8.pid"]).source == .proxmox(vmid: 8))
        // Upstream QEMU has no -id: its pid file and QMP socket in the run directory, under one
        // VMID, are both needed then.
        let qmp = ["-chardev", "socket,id=qmp,path=/run/qemu-server/9.qmp,server=on,wait=off", "-mon", "chardev=qmp,mode=control"]
        #expect(QEMUGuestCommandLine(arguments: ["qemu-system-x86_64", "-pidfile", "/run/qemu-server/9.pid"] + qmp).source == .proxmox(vmid: 9))
        #expect(QEMUGuestCommandLine(arguments: ["qemu-system-x86_64", "-pidfile", "/run/qemu-server/10.pid"] + qmp).source == .qemu)
        #expect(QEMUGuestCommandLine(arguments: ["qemu-system-x86_64", "-pidfile", "/run/qemu-server/x9.pid"] + qmp).source == .qemu)
        // Another run directory, as a test host has it.
        let elsewhere = ["qemu-system-x86_64", "-pidfile", "/srv/pve/run/9.pid", "-qmp", "unix:/srv/pve/run/9.qmp,server=on,wait=off"]
        #expect(QEMUGuestCommandLine(arguments: elsewhere).source == .qemu)
        #expect(QEMUGuestCommandLine(arguments: elsewhere, proxmoxRunDirectories: ["/srv/pve/run"]).source == .proxmox(vmid: 9))
    }

    @Test("-machine mem-merge=off asks the kernel not to merge guest RAM")
    func memMerge() {
        #expect(QEMUGuestCommandLine(arguments: ["qemu-system-x86_64", "-machine", "pc,mem-merge=off"]).memMergeOff)
        #expect(QEMUGuestCommandLine(arguments: ["qemu-system-x86_64", "-machine", "type=q35,mem-merge=no"]).memMergeOff)
        #expect(!QEMUGuestCommandLine(arguments: ["qemu-system-x86_64", "-machine", "pc,mem-merge=on"]).memMergeOff)
        #expect(!QEMUGuestCommandLine(arguments: ["qemu-system-x86_64", "-machine", "pc"]).memMergeOff)
    }

    @Test("Plain QEMU: -qmp unix server, double-dash options, locked memory, name as key without a UUID")
    func plainQEMU() {
        let line = QEMUGuestCommandLine(arguments: [
            "qemu-system-x86_64", "-enable-kvm", "--name", "guest=ci-runner,debug-threads=on",
            "-m", "1G", "-qmp", "unix:/tmp/x.sock,server=on,wait=off", "-pidfile", "/run/ci/runner.pid",
            "--overcommit", "mem-lock=on", "-mem-prealloc", "-mem-path", "/dev/hugepages",
            "-drive", "file=disk.qcow2,if=virtio", "extra.img",
        ])
        #expect(line.name == "ci-runner")
        #expect(line.source == .qemu)
        #expect(line.monitors == [.unixServer("/tmp/x.sock")])
        #expect(line.memoryLocked)
        #expect(line.memPrealloc)
        #expect(line.memPath == "/dev/hugepages")
        #expect(line.ramSize == 1 << 30)
        #expect(line.pidFile == "/run/ci/runner.pid")
        #expect(line.key == .name("ci-runner"))
        #expect(line.key?.description == "name:ci-runner")
    }

    @Test("The old -qmp flags server,nowait make a server; without server QEMU connects out")
    func oldQMPFlags() {
        #expect(QEMUGuestCommandLine(arguments: ["qemu", "-qmp", "unix:/tmp/old.sock,server,nowait"]).monitors
            == [.unixServer("/tmp/old.sock")])
        #expect(QEMUGuestCommandLine(arguments: ["qemu", "-qmp", "unix:/tmp/out.sock"]).monitors == [.unixClient("/tmp/out.sock")])
        #expect(QEMUGuestCommandLine(arguments: ["qemu", "-qmp-pretty", "unix:/tmp/a,,b.sock,server=on"]).monitors
            == [.unixServer("/tmp/a,b.sock")])
        #expect(QEMUGuestCommandLine(arguments: ["qemu", "-qmp", "tcp:127.0.0.1:4444,server=on,wait=off"]).monitors
            == [.tcp("127.0.0.1:4444")])
        #expect(QEMUGuestCommandLine(arguments: ["qemu", "-qmp", "stdio"]).monitors == [.other("stdio")])
    }

    @Test("A descriptor passed in, by -qmp unix:fd=N or a chardev's fd=N, is accounted, not connectable")
    func descriptors() {
        let legacy = QEMUGuestCommandLine(arguments: ["qemu", "-qmp", "unix:fd=3"])
        #expect(legacy.monitors == [.descriptor(3)])
        #expect(legacy.connectableMonitors.isEmpty)
        let kata = QEMUGuestCommandLine(arguments: [
            "/opt/kata/bin/qemu-system-x86_64", "-name", "sandbox-4d1f", "-uuid", "11111111-2222-4333-8444-555555555555",
            "-chardev", "socket,id=charmonitor,fd=5,server=on", "-mon", "chardev=charmonitor,id=monitor,mode=control",
        ])
        #expect(kata.monitors == [.descriptor(5)])
        #expect(!kata.monitors[0].isConnectable)
    }

    @Test("-mon counts in mode=control only (readline is HMP), also before its -chardev and by chardev:ID")
    func monitorModes() {
        let line = QEMUGuestCommandLine(arguments: [
            "qemu-system-aarch64",
            "-mon", "mon0,mode=control",
            "-chardev", "socket,id=mon0,path=/run/a.qmp,server=on,wait=off",
            "-chardev", "socket,id=hmp0,path=/run/a.hmp,server=on,wait=off", "-mon", "chardev=hmp0",
            "-chardev", "socket,id=hmp1,path=/run/b.hmp,server=on,wait=off", "-mon", "chardev=hmp1,mode=readline",
            "-chardev", "socket,id=q2,path=/run/c.qmp,server=on,wait=off", "-qmp", "chardev:q2",
            "-monitor", "unix:/run/d.hmp,server,nowait",
        ])
        #expect(line.monitors == [.unixServer("/run/a.qmp"), .unixServer("/run/c.qmp")])
    }

    @Test("A socket chardev without server=on is QEMU connecting out; JSON chardevs default to server")
    func clientSockets() {
        let client = QEMUGuestCommandLine(arguments: [
            "qemu", "-chardev", "socket,id=mgr,path=/run/manager.sock,reconnect=1", "-mon", "chardev=mgr,mode=control",
        ])
        #expect(client.monitors == [.unixClient("/run/manager.sock")])
        #expect(client.connectableMonitors.isEmpty)
        let json = QEMUGuestCommandLine(arguments: [
            "qemu",
            "-chardev", #"{"id":"m","backend":{"type":"socket","data":{"addr":{"type":"unix","data":{"path":"/run/j.qmp"}},"wait":false}}}"#,
            "-chardev", #"{"id":"c","backend":{"type":"socket","data":{"addr":{"type":"unix","data":{"path":"/run/out"}},"server":false}}}"#,
            "-mon", "chardev=m,mode=control", "-mon", "chardev=c,mode=control", "-mon", "chardev=missing,mode=control",
        ])
        #expect(json.monitors == [.unixServer("/run/j.qmp"), .unixClient("/run/out"), .other("chardev:missing")])
    }

    @Test("The UUID from -uuid or -smbios type=1, the later winning; other smbios types ignored")
    func uuids() {
        let smbios = QEMUGuestCommandLine(arguments: [
            "qemu", "-smbios", "type=1,manufacturer=Acme,,Inc,uuid=0a1b2c3d-4e5f-4061-8728-394a5b6c7d8e",
            "-smbios", "type=2,serial=abc",
        ])
        #expect(smbios.uuid == UUID(uuidString: "0a1b2c3d-4e5f-4061-8728-394a5b6c7d8e"))
        let both = QEMUGuestCommandLine(arguments: [
            "qemu", "-uuid", "0a1b2c3d-4e5f-4061-8728-394a5b6c7d8e", "-smbios", "type=1,uuid=99999999-8888-4777-8666-555555555555",
        ])
        #expect(both.uuid == UUID(uuidString: "99999999-8888-4777-8666-555555555555"))
        #expect(QEMUGuestCommandLine(arguments: ["qemu", "-uuid", "not-a-uuid"]).uuid == nil)
        #expect(QEMUGuestCommandLine(arguments: ["qemu"]).key == nil)
    }

    @Test("A value is never read as an option: -append '-name x' names nothing")
    func valuesAreNotOptions() {
        let line = QEMUGuestCommandLine(arguments: ["qemu", "-append", "-name", "-name", "real", "-kernel", "-qmp"])
        #expect(line.name == "real")
        #expect(line.monitors.isEmpty)
    }

    @Test("Devices that reach RAM: VFIO, vDPA, the userspace NVMe driver, ivshmem; not the emulated NVMe")
    func devices() {
        let line = QEMUGuestCommandLine(arguments: [
            "qemu-system-x86_64",
            "-device", #"{"driver":"vfio-pci","host":"0000:03:00.0","id":"hostdev0"}"#,
            "-netdev", "vhost-vdpa,vhostdev=/dev/vhost-vdpa-0,id=vdpa0",
            "-netdev", "type=tap,id=net0",
            "-device", "vhost-vdpa-device-pci,vhostdev=/dev/vhost-vdpa-1",
            "-blockdev", #"{"driver":"nvme","device":"0000:44:00.0","namespace":1,"node-name":"nvme0"}"#,
            "-blockdev", #"{"driver":"qcow2","node-name":"fmt","file":{"driver":"nvme","device":"0000:45:00.0","namespace":1}}"#,
            "-drive", "file=nvme://0000:46:00.0/1,if=none,id=drive1",
            "-drive", "driver=qcow2,file.driver=nvme,file.device=0000:47:00.0,id=drive2",
            "-device", "nvme,serial=deadbeef,drive=drive0",
            "-device", "ivshmem-plain,memdev=hostmem",
            "-blockdev", "driver=virtio-blk-vhost-vdpa,path=/dev/vhost-vdpa-2,node-name=vblk",
        ])
        #expect(line.devices == [
            QEMUGuestDevice(kind: .vfio, option: "-device", driver: "vfio-pci", id: "hostdev0"),
            QEMUGuestDevice(kind: .vhostVDPA, option: "-netdev", driver: "vhost-vdpa", id: "vdpa0"),
            QEMUGuestDevice(kind: .vhostVDPA, option: "-device", driver: "vhost-vdpa-device-pci"),
            QEMUGuestDevice(kind: .userspaceNVMe, option: "-blockdev", driver: "nvme", id: "nvme0"),
            QEMUGuestDevice(kind: .userspaceNVMe, option: "-blockdev", driver: "nvme", id: "fmt"),
            QEMUGuestDevice(kind: .userspaceNVMe, option: "-drive", driver: "nvme", id: "drive1"),
            QEMUGuestDevice(kind: .userspaceNVMe, option: "-drive", driver: "nvme", id: "drive2"),
            QEMUGuestDevice(kind: .ivshmem, option: "-device", driver: "ivshmem-plain"),
            QEMUGuestDevice(kind: .vhostVDPA, option: "-blockdev", driver: "virtio-blk-vhost-vdpa", id: "vblk"),
        ])
    }

    @Test("-realtime locks memory unless mlock=off; -overcommit mem-lock=off does not")
    func lockedMemory() {
        #expect(QEMUGuestCommandLine(arguments: ["qemu", "-realtime", "mlock=on"]).memoryLocked)
        #expect(QEMUGuestCommandLine(arguments: ["qemu", "-realtime", "mlock=off"]).memoryLocked == false)
        #expect(QEMUGuestCommandLine(arguments: ["qemu", "-overcommit", "mem-lock=on-fault"]).memoryLocked)
        #expect(QEMUGuestCommandLine(arguments: ["qemu", "-overcommit", "mem-lock=off", "-overcommit", "cpu-pm=on"]).memoryLocked == false)
    }

    @Test("Binary names: qemu-system-*, qemu-kvm and kvm, a deleted binary too; not qemu-img")
    func executableNames() {
        let names = QEMUExecutableNames.default
        #expect(names.matches(linkTarget: "/usr/bin/qemu-system-aarch64"))
        #expect(names.matches(linkTarget: "/usr/libexec/qemu-kvm"))
        #expect(names.matches(linkTarget: "/usr/bin/kvm"))
        #expect(names.matches(linkTarget: "/usr/bin/qemu-system-x86_64 (deleted)"))
        #expect(!names.matches(linkTarget: "/usr/bin/qemu-img"))
        #expect(!names.matches(linkTarget: "/usr/bin/kvm-ok"))
        #expect(!names.matches(linkTarget: "/opt/my-qemu-system-x86_64"))
        #expect(!names.matches(linkTarget: "/usr/bin/kvm/"))
        #expect(QEMUExecutableNames(patterns: ["cloud-hypervisor"]).matches(linkTarget: "/usr/bin/cloud-hypervisor"))
        let deleted = QEMUExecutableNames.executable(linkTarget: "/usr/bin/kvm (deleted)")
        #expect(deleted.path == "/usr/bin/kvm")
        #expect(deleted.deleted)
    }
}

@testable import QEMUGuests
import Testing

@Suite("Libvirt's QEMUs told apart")
struct LibvirtOwnershipTests {
    /// As libvirt 9 starts QEMU 7.2 (abridged): JSON -object, its master key.
    static let libvirtJSON = [
        "/usr/bin/qemu-system-x86_64", "-name", "guest=sp-memfd-1,debug-threads=on", "-S",
        "-object", #"{"qom-type":"secret","id":"masterKey0","format":"raw","file":"/var/lib/libvirt/qemu/domain-3-sp-memfd-1/master-key.aes"}"#,
        "-machine", "pc-i440fx-7.2,usb=off,dump-guest-core=off,memory-backend=pc.ram",
        "-m", "256",
        "-object", #"{"qom-type":"memory-backend-memfd","id":"pc.ram","share":true,"size":268435456}"#,
        "-uuid", "0f5e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
        "-chardev", "socket,id=charmonitor,fd=31,server=on,wait=off", "-mon", "chardev=charmonitor,id=monitor,mode=control",
    ]

    @Test("libvirt's own command line, JSON or QemuOpts, by its master key")
    func masterKey() {
        #expect(LibvirtOwnership.owner(pid: 10, arguments: Self.libvirtJSON, cgroup: nil, libvirtPIDFiles: [:])
            == .masterKey("/var/lib/libvirt/qemu/domain-3-sp-memfd-1/master-key.aes"))
        let opts = [
            "/usr/libexec/qemu-kvm", "-name", "guest=old,debug-threads=on",
            "-object", "secret,id=masterKey0,format=raw,file=/var/lib/libvirt/qemu/domain-1-old/master-key.aes",
        ]
        #expect(LibvirtOwnership.owner(pid: 10, arguments: opts, cgroup: nil, libvirtPIDFiles: [:])
            == .masterKey("/var/lib/libvirt/qemu/domain-1-old/master-key.aes"))
        // The command line parses as libvirt's guest would: a descriptor monitor, nothing to connect to.
        #expect(QEMUGuestCommandLine(arguments: Self.libvirtJSON).monitors == [.descriptor(31)])
    }

    @Test("A secret elsewhere, or libvirt's key without -name guest=, is not libvirt's mark")
    func notMasterKey() {
        let elsewhere = ["qemu", "-name", "guest=mine", "-object", "secret,id=masterKey0,format=raw,file=/home/me/key"]
        #expect(LibvirtOwnership.owner(pid: 10, arguments: elsewhere, cgroup: nil, libvirtPIDFiles: [:]) == nil)
        let unnamed = ["qemu", "-name", "mine", "-object", "secret,id=masterKey0,file=/var/lib/libvirt/qemu/domain-1-x/master-key.aes"]
        #expect(LibvirtOwnership.owner(pid: 10, arguments: unnamed, cgroup: nil, libvirtPIDFiles: [:]) == nil)
        let otherID = ["qemu", "-name", "guest=x", "-object", "secret,id=sec0,file=/var/lib/libvirt/qemu/domain-1-x/master-key.aes"]
        #expect(LibvirtOwnership.owner(pid: 10, arguments: otherID, cgroup: nil, libvirtPIDFiles: [:]) == nil)
    }

    @Test("A pid in one of libvirt's pid files; the files read from the run directory")
    func pidFiles() {
        let run = TemporaryDirectory()
        run.write("web.pid", "4242\n")
        run.write("web.xml", "<domstatus/>")
        run.write("broken.pid", "not a pid")
        run.write("swtpm/web-swtpm.pid", "999")
        let files = LibvirtOwnership.readPIDFiles(runDirectory: run.path)
        #expect(files == [4242: "\(run.path)/web.pid"])
        let plain = ["qemu-system-x86_64", "-name", "web"]
        #expect(LibvirtOwnership.owner(pid: 4242, arguments: plain, cgroup: nil, libvirtPIDFiles: files, runDirectory: run.path)
            == .pidFile("\(run.path)/web.pid"))
        #expect(LibvirtOwnership.owner(pid: 4243, arguments: plain, cgroup: nil, libvirtPIDFiles: files, runDirectory: run.path) == nil)
        #expect(LibvirtOwnership.readPIDFiles(runDirectory: "\(run.path)/absent").isEmpty)
        // QEMU told to write its pid file into libvirt's run directory.
        #expect(LibvirtOwnership.owner(pid: 1, arguments: ["qemu", "-pidfile", "/run/libvirt/qemu/x.pid"], cgroup: nil, libvirtPIDFiles: [:])
            == .pidFile("/run/libvirt/qemu/x.pid"))
    }

    @Test("libvirt's machine cgroup, v2 or v1; Proxmox's qemu.slice is not")
    func cgroups() {
        let plain = ["qemu-system-x86_64"]
        let v2 = "0::/machine.slice/machine-qemu\\x2d3\\x2dweb.scope/libvirt/emulator\n"
        #expect(LibvirtOwnership.owner(pid: 1, arguments: plain, cgroup: v2, libvirtPIDFiles: [:])
            == .cgroup("/machine.slice/machine-qemu\\x2d3\\x2dweb.scope/libvirt/emulator"))
        let v1 = "12:pids:/user.slice\n4:memory:/machine.slice/machine-qemu\\x2d1\\x2dold.scope\n"
        #expect(LibvirtOwnership.owner(pid: 1, arguments: plain, cgroup: v1, libvirtPIDFiles: [:])
            == .cgroup("/machine.slice/machine-qemu\\x2d1\\x2dold.scope"))
        #expect(LibvirtOwnership.owner(pid: 1, arguments: plain, cgroup: "0::/qemu.slice/101.scope\n", libvirtPIDFiles: [:]) == nil)
        // Proxmox's own command line bears no mark.
        #expect(LibvirtOwnership.owner(
            pid: 1, arguments: QEMUGuestCommandLineTests.proxmoxMemfd, cgroup: "0::/qemu.slice/101.scope\n", libvirtPIDFiles: [:]) == nil)
    }
}

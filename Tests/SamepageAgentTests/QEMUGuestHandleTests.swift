import Foundation
import QEMUGuests
import QMP
@testable import SamepageAgent
import SamepageModel
import Testing

@Suite("Guests outside libvirt: identity, QMP socket and facts from the command line")
struct QEMUGuestHandleTests {
    private func handle(_ arguments: [String], pid: pid_t = 4242) -> QEMUGuestHandle? {
        QEMUGuestHandle(DiscoveredQEMU(
            pid: pid, startTime: 777, executable: "/usr/bin/qemu-system-x86_64",
            commandLine: QEMUGuestCommandLine(arguments: ["qemu-system-x86_64"] + arguments)))
    }

    @Test func aProxmoxGuestIsPausedOverQemuServersOwnSocket() throws {
        let guest = try #require(handle([
            "-id", "101", "-name", "web,debug-threads=on",
            "-qmp", "unix:/tmp/other.qmp,server=on,wait=off",
            "-chardev", "socket,id=qmp,path=/var/run/qemu-server/101.qmp,server=on,wait=off", "-mon", "chardev=qmp,mode=control",
            "-pidfile", "/var/run/qemu-server/101.pid", "-smbios", "type=1,uuid=6c2b3d7e-1a4f-4c1e-9f0a-2b3c4d5e6f70",
            "-object", "memory-backend-memfd,id=virtiofs-mem,size=2048M,share=on",
        ]))
        #expect(guest.source == .proxmox)
        #expect(guest.vmid == 101)
        #expect(guest.name == "web")
        #expect(guest.uuid == UUID(uuidString: "6c2b3d7e-1a4f-4c1e-9f0a-2b3c4d5e6f70"))
        #expect(!guest.uuidDerived)
        #expect(guest.qmpSocket == "/var/run/qemu-server/101.qmp")
        #expect(guest.unreachable == nil)
        #expect(guest.journalTarget == PauseJournal.QMPTarget(socket: "/var/run/qemu-server/101.qmp", pid: 4242, startTime: 777))
        let facts = guest.commandLineFacts
        #expect(facts.backing == "memfd" && facts.access == "shared")
        #expect(!facts.locked && !facts.preallocated && facts.assignedDevices.isEmpty)
    }

    @Test func withoutAServerSocketAGuestIsAccountedOnlyWithTheReason() throws {
        let kata = try #require(handle(["-name", "sandbox-1", "-qmp", "unix:fd=3", "-uuid", "1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b"]))
        #expect(kata.qmpSocket == nil)
        #expect(kata.journalTarget == nil)
        #expect(kata.unreachable == "no QMP server socket to connect to (fd=3)")
        #expect(kata.commandLineFacts.qmpUnreachable == kata.unreachable)
        let client = try #require(handle(["-name", "c", "-chardev", "socket,id=m,path=/run/mgr.sock", "-mon", "chardev=m,mode=control"]))
        #expect(client.qmpSocket == nil)
        #expect(client.unreachable == "no QMP server socket to connect to (unix:/run/mgr.sock (QEMU connects out))")
        let none = try #require(handle(["-name", "quiet"]))
        #expect(none.unreachable == "no QMP monitor on its command line")
    }

    @Test func aGuestWithoutAUUIDGetsOneFromItsNameThatStays() throws {
        let first = try #require(handle(["-name", "ci-runner", "-qmp", "unix:/tmp/ci.qmp,server=on,wait=off"], pid: 1))
        let again = try #require(handle(["-name", "ci-runner", "-qmp", "unix:/tmp/ci.qmp,server=on,wait=off"], pid: 2))
        let other = try #require(handle(["-name", "ci-runner-2", "-qmp", "unix:/tmp/ci2.qmp,server=on,wait=off"]))
        #expect(first.uuidDerived)
        #expect(first.uuid == again.uuid)
        #expect(first.uuid != other.uuid)
        // RFC 9562: version 8 in the high nibble of byte 6, variant 10 in byte 8.
        let bytes = withUnsafeBytes(of: first.uuid.uuid) { Array($0) }
        #expect(bytes[6] >> 4 == 8)
        #expect(bytes[8] >> 6 == 0b10)
        // Nothing to select it by: not followed.
        #expect(handle(["-m", "512"]) == nil)
    }

    @Test func whatPinsOrReachesRAMIsAFact() throws {
        let guest = try #require(handle([
            "-name", "db", "-overcommit", "mem-lock=on", "-mem-prealloc",
            "-object", "memory-backend-file,id=mem,size=1G,mem-path=/dev/hugepages/db,share=on",
            "-device", "vfio-pci,host=0000:3b:00.0,id=hostpci0", "-device", "ivshmem-plain,memdev=shm0,id=ivshmem0",
            "-chardev", "socket,id=char0,path=/run/vfs.sock", "-device", "vhost-user-fs-pci,chardev=char0,tag=fs",
        ]))
        let facts = guest.commandLineFacts
        #expect(facts.locked)
        #expect(facts.preallocated)
        #expect(facts.hugepages)
        #expect(facts.backing == "file")
        #expect(facts.assignedDevices == ["-device vfio-pci (hostpci0)"])
        #expect(facts.ivshmem == ["-device ivshmem-plain (ivshmem0)"])
        #expect(facts.vhostUser == ["/run/vfs.sock"])
    }
}

import Foundation
import Glibc
import GuestMemory
@testable import QEMUGuests
import Testing

/// A fake proc root: `ROOT/PID/{stat,cmdline,cgroup}` files and an `exe` link, as the test
/// writes them.
private final class FakeProc {
    let directory = TemporaryDirectory()
    var root: String { directory.path }

    /// `stat` with the command `comm` and start time `start`; field 2 holds a space, as a
    /// command may.
    func stat(_ pid: pid_t, comm: String, start: UInt64) {
        directory.write("\(pid)/stat",
            "\(pid) (\(comm)) S 1 \(pid) \(pid) 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 \(start) 123456 300 18446744073709551615 1 1 0\n")
    }

    func exe(_ pid: pid_t, _ target: String) {
        unlink("\(root)/\(pid)/exe")
        symlink(target, "\(root)/\(pid)/exe")
    }

    func cmdline(_ pid: pid_t, _ arguments: [String]) {
        directory.write("\(pid)/cmdline", arguments.map { $0 + "\0" }.joined())
    }

    func process(_ pid: pid_t, comm: String, start: UInt64, exe: String, arguments: [String], cgroup: String = "0::/user.slice\n") {
        stat(pid, comm: comm, start: start)
        self.exe(pid, exe)
        cmdline(pid, arguments)
        directory.write("\(pid)/cgroup", cgroup)
    }
}

@Suite("QEMU guest discovery")
struct QEMUGuestDiscoveryTests {
    @Test("one process table feeds both the mapping index and discovery: each stat is read once")
    func sharedProcessTable() {
        let proc = FakeProc()
        proc.process(100, comm: "kvm", start: 1000, exe: "/usr/bin/qemu-system-x86_64",
                     arguments: ["/usr/bin/qemu-system-x86_64", "-name", "web", "-uuid", "0f5e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"])
        proc.process(200, comm: "bash", start: 2000, exe: "/usr/bin/bash", arguments: ["bash"])
        proc.directory.write("100/maps", "7f0000000000-7f0010000000 rw-s 00000000 00:01 4242 /memfd:pc.ram (deleted)\n")
        proc.directory.write("200/maps", "")
        proc.directory.write("300/status", "")  // Exited: its directory lingers without stat.

        let table = ProcessTable.read(procRoot: proc.root)
        #expect(table.statReads == 3)
        #expect(table.entries.map(\.pid).sorted() == [100, 200, 300])
        let stats = Dictionary(uniqueKeysWithValues: table.entries.compactMap { entry -> (pid_t, ProcessTable.Stat)? in
            if case .read(let stat) = entry.reading { (entry.pid, stat) } else { nil }
        })
        #expect(stats[100] == ProcessTable.Stat(startTime: 1000, virtualSize: 123456, command: Array("kvm".utf8)))
        #expect(stats[300] == nil)

        // Neither reader reads a stat of its own: without 200's, both still see it from the table.
        unlink("\(proc.root)/200/stat")
        let index = ProcessMappingIndex(procRoot: proc.root)
        let discovery = QEMUGuestDiscovery(procRoot: proc.root, libvirtRunDirectory: "\(proc.root)/none", trust: nil)
        let pass = index.refresh(from: table)
        let found = discovery.refresh(from: table)
        // Both saw the same processes from the one table: three listed, no stat read again
        // by either (discovery reads stat once more only for a new QEMU, after its cmdline).
        #expect(pass.processes == 3)
        #expect(pass.mapsRead == 2)
        #expect(pass.unreadable.isEmpty)
        #expect(discovery.lastPass.processes == 3)
        #expect(discovery.lastPass.executablesRead == 2)
        #expect(discovery.lastPass.unreadable.isEmpty)
        #expect(found.map(\.pid) == [100])
        #expect(index.processes(mappingAny: [FileIdentity(deviceMajor: 0, deviceMinor: 1, inode: 4242)]).values.first == [100])

        // A table of the same processes changes nothing for either: no maps, no exe read.
        proc.stat(200, comm: "bash", start: 2000)
        let again = ProcessTable.read(procRoot: proc.root)
        #expect(index.refresh(from: again).mapsRead == 0)
        #expect(discovery.refresh(from: again).map(\.pid) == [100])
        #expect(discovery.lastPass.executablesRead == 0)
    }

    @Test("QEMUs found, others not; vanished, deleted binary, libvirt's; a second pass reads nothing unchanged")
    func discovery() {
        let proc = FakeProc()
        let run = TemporaryDirectory()
        proc.process(100, comm: "kvm", start: 1000, exe: "/usr/bin/qemu-system-x86_64",
                     arguments: QEMUGuestCommandLineTests.proxmoxMemfd, cgroup: "0::/qemu.slice/101.scope\n")
        proc.process(200, comm: "bash", start: 2000, exe: "/usr/bin/bash", arguments: ["bash", "-c", "exec qemu"])
        proc.stat(2, comm: "kthreadd", start: 1)  // A kernel thread: no exe.
        proc.directory.write("300/status", "")  // Exited: its directory lingers without stat.
        proc.stat(301, comm: "qemu-system-x86", start: 3010)  // Exits between its exe and its cmdline.
        proc.exe(301, "/usr/bin/qemu-system-x86_64")
        proc.process(400, comm: "qemu-system-x86", start: 4000, exe: "/usr/bin/qemu-system-x86_64 (deleted)",
                     arguments: ["/usr/bin/qemu-system-x86_64", "-name", "upgraded", "-qmp", "unix:/run/u.sock,server,nowait"])
        proc.process(500, comm: "qemu-system-x86", start: 5000, exe: "/usr/bin/qemu-system-x86_64",
                     arguments: ["/usr/bin/qemu-system-x86_64", "-name", "guest=lv", "-uuid", "0f5e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"])
        run.write("lv.pid", "500\n")

        let discovery = QEMUGuestDiscovery(procRoot: proc.root, libvirtRunDirectory: run.path, trust: nil)
        let first = discovery.refresh()
        #expect(first.map(\.pid) == [100, 400, 500])
        #expect(first[0].commandLine.name == "web")
        #expect(first[0].commandLine.source == .proxmox(vmid: 101))
        #expect(first[0].executable == "/usr/bin/qemu-system-x86_64")
        #expect(first[0].executableDeleted == false)
        #expect(first[0].startTime == 1000)
        #expect(first[0].managedByLibvirt == nil)
        #expect(first[1].executable == "/usr/bin/qemu-system-x86_64")
        #expect(first[1].executableDeleted)
        #expect(first[1].commandLine.monitors == [.unixServer("/run/u.sock")])
        #expect(first[2].managedByLibvirt == .pidFile("\(run.path)/lv.pid"))
        #expect(discovery.lastPass.processes == 7)
        #expect(discovery.lastPass.executablesRead == 6)  // All but 300, which has no stat.
        #expect(discovery.lastPass.commandLinesRead == 4)  // 100, 301 (gone), 400, 500.
        #expect(discovery.lastPass.refused.isEmpty)
        #expect(discovery.lastPass.unreadable.isEmpty)

        // The same processes: nothing read again but the one that could not be read (301),
        // and a changed cmdline under an unchanged start time is not looked at.
        proc.cmdline(100, ["/usr/bin/kvm", "-name", "changed"])
        let second = discovery.refresh()
        #expect(second == first)
        #expect(discovery.lastPass.executablesRead == 1)
        #expect(discovery.lastPass.commandLinesRead == 1)

        // 301 got its cmdline; 100 restarted (a new start time) and is read again; 500 lost its
        // pid file, 400 got one, without a read of either's cmdline.
        proc.cmdline(301, ["qemu-system-x86_64", "-name", "late"])
        proc.stat(100, comm: "kvm", start: 1001)
        run.remove("lv.pid")
        run.write("up.pid", "400")
        let third = discovery.refresh()
        #expect(third.map(\.pid) == [100, 301, 400, 500])
        #expect(third[0].commandLine.name == "changed")
        #expect(third[0].startTime == 1001)
        #expect(third[1].commandLine.name == "late")
        #expect(third[2].managedByLibvirt == .pidFile("\(run.path)/up.pid"))
        #expect(third[3].managedByLibvirt == nil)
        #expect(discovery.lastPass.commandLinesRead == 2)
    }

    @Test("A script that execs QEMU keeps its pid and start time; its new comm gets it read again")
    func execKeepsPid() {
        let proc = FakeProc()
        proc.process(200, comm: "start-vm.sh", start: 2000, exe: "/usr/bin/bash", arguments: ["/bin/sh", "./start-vm.sh"])
        let discovery = QEMUGuestDiscovery(procRoot: proc.root, libvirtRunDirectory: "\(proc.root)/none", trust: nil)
        #expect(discovery.refresh().isEmpty)
        proc.process(200, comm: "qemu-system-x86", start: 2000, exe: "/usr/bin/qemu-system-x86_64",
                     arguments: ["qemu-system-x86_64", "-name", "scripted"])
        let found = discovery.refresh()
        #expect(found.map(\.commandLine.name) == ["scripted"])
        #expect(discovery.lastPass.executablesRead == 1)
    }

    @Test("An exited process is forgotten: its pid, reused by another program, is read anew")
    func pidReuse() {
        let proc = FakeProc()
        proc.process(100, comm: "kvm", start: 1000, exe: "/usr/bin/kvm", arguments: ["/usr/bin/kvm", "-name", "a"])
        let discovery = QEMUGuestDiscovery(procRoot: proc.root, libvirtRunDirectory: "\(proc.root)/none", trust: nil)
        #expect(discovery.refresh().count == 1)
        proc.directory.remove("100")
        #expect(discovery.refresh().isEmpty)
        proc.process(100, comm: "kvm", start: 1000, exe: "/usr/bin/kvm", arguments: ["/usr/bin/kvm", "-name", "b"])
        #expect(discovery.refresh().map(\.commandLine.name) == ["b"])
    }
}

@Suite("QEMU guest discovery: who may be a hypervisor")
struct ProcessTrustTests {
    private let root = ProcessTrust(allowedUIDs: [0, 64055])
    private let system: [(path: String, owner: uid_t, mode: mode_t)] = [("/", 0, S_IFDIR | 0o755), ("/usr", 0, S_IFDIR | 0o755), ("/usr/bin", 0, S_IFDIR | 0o755)]

    private func facts(uids: [uid_t] = [0, 0, 0, 0], owner: uid_t = 0, mode: mode_t = S_IFREG | 0o755,
                       directories: [(path: String, owner: uid_t, mode: mode_t)]? = nil) -> ProcessTrust.Facts {
        ProcessTrust.Facts(uids: uids, executableOwner: owner, executableMode: mode, directories: directories ?? system)
    }

    @Test("A root or hypervisor-user QEMU from root's own directories is trusted")
    func trusted() {
        #expect(root.untrustedReason(facts(), executable: "/usr/bin/qemu-system-x86_64") == nil)
        #expect(root.untrustedReason(facts(uids: [64055, 64055, 64055, 64055]), executable: "/usr/bin/kvm") == nil)
    }

    @Test("Another user, a binary not root's or writable by others, a directory others may write: not trusted")
    func untrusted() {
        let exe = "/usr/bin/kvm"
        #expect(root.untrustedReason(facts(uids: [65534, 65534, 65534, 65534]), executable: exe)?.contains("uid 65534") == true)
        // Any one of the four uids counts: a setuid-root binary run by nobody keeps real uid 65534.
        #expect(root.untrustedReason(facts(uids: [65534, 0, 0, 0]), executable: exe)?.contains("uid 65534") == true)
        #expect(root.untrustedReason(facts(owner: 1000), executable: exe)?.contains("owned by uid 1000") == true)
        #expect(root.untrustedReason(facts(mode: S_IFREG | 0o757), executable: exe)?.contains("writable by others") == true)
        #expect(root.untrustedReason(facts(mode: S_IFREG | 0o775), executable: exe)?.contains("writable by others") == true)
        let shm = [("/", uid_t(0), S_IFDIR | 0o755), ("/dev", 0, S_IFDIR | 0o755), ("/dev/shm", 0, S_IFDIR | 0o1777)]
        #expect(root.untrustedReason(facts(directories: shm), executable: "/dev/shm/kvm") == "/dev/shm, on its executable's path, is writable by others (mode 1777)")
        let home = [("/", uid_t(0), S_IFDIR | 0o755), ("/home", 0, S_IFDIR | 0o755), ("/home/eve", 1000, S_IFDIR | 0o755)]
        #expect(root.untrustedReason(facts(directories: home), executable: "/home/eve/kvm")?.contains("/home/eve, on its executable's path, is owned by uid 1000") == true)
    }

    @Test("The facts of a real process: its uids, its executable and every directory above it")
    func factsOfThisProcess() throws {
        let executable = try #require(try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        let facts = try ProcessTrust.facts(pid: getpid(), executable: executable)
        #expect(facts.uids == [getuid(), geteuid(), getuid(), geteuid()])
        let expected = ["/"] + executable.split(separator: "/").dropLast().indices.map { index in
            "/" + executable.split(separator: "/")[...index].joined(separator: "/")
        }
        #expect(facts.directories.map(\.path) == expected)
        #expect(facts.executableMode & S_IFMT == S_IFREG)
    }

    @Test("A process named like a QEMU that is not trusted is never returned, and the reason is kept")
    func discoveryLeavesUntrustedOut() {
        let proc = FakeProc()
        let binaries = TemporaryDirectory()
        binaries.write("kvm", "#!/bin/sh\n")
        proc.process(100, comm: "kvm", start: 1000, exe: "\(binaries.path)/kvm", arguments: ["kvm", "-name", "db1"])
        proc.directory.write("100/status", "Name:\tkvm\nUid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\n")
        proc.process(200, comm: "kvm", start: 2000, exe: "\(binaries.path)/kvm", arguments: ["kvm", "-name", "db2"])
        proc.directory.write("200/status", "Name:\tkvm\nUid:\t0\t0\t0\t0\n")
        let discovery = QEMUGuestDiscovery(procRoot: proc.root, libvirtRunDirectory: "\(proc.root)/none", trust: ProcessTrust(allowedUIDs: [0]))
        #expect(discovery.refresh().isEmpty)
        #expect(discovery.untrusted[100]?.reason.contains("uid 65534") == true, "\(discovery.untrusted)")
        #expect(discovery.untrusted[100]?.uid == 65534)
        #expect(discovery.untrusted[100]?.executable == "\(binaries.path)/kvm")
        // The name it claims is kept for the report (dominfo db1 says who claims it), never believed.
        #expect(discovery.untrusted[100]?.claimedName == "db1")
        // Root's, but from a directory under /tmp, which others may write.
        #expect(discovery.untrusted[200]?.reason.contains("writable by others") == true, "\(discovery.untrusted)")
        #expect(discovery.untrusted[200]?.uid == 0)
        #expect(discovery.lastPass.commandLinesRead == 0)
    }

    @Test("A libvirt session guest (qemu:///session: the user's own QEMU) is not picked up")
    func sessionGuestExcluded() throws {
        // A real root-owned QEMU binary in root's directories: only the uid can refuse it.
        let binary = "/usr/bin/qemu-system-x86_64"
        guard access(binary, X_OK) == 0 else { return }
        let proc = FakeProc()
        let key = "/home/alice/.config/libvirt/qemu/lib/domain-1-web/master-key.aes"
        proc.process(300, comm: "qemu-system-x86", start: 3000, exe: binary, arguments: [
            "/usr/bin/qemu-system-x86_64", "-name", "guest=web,debug-threads=on", "-S",
            "-object", #"{"qom-type":"secret","id":"masterKey0","format":"raw","file":"\#(key)"}"#,
            "-uuid", "0b7e6f5c-1d2e-4f30-9a4b-5c6d7e8f9a0b",
            "-chardev", "socket,id=charmonitor,fd=21,server=on,wait=off",
        ], cgroup: "0::/user.slice/user-1000.slice/user@1000.service/app.slice\n")
        proc.directory.write("300/status", "Name:\tqemu-system-x86\nUid:\t1000\t1000\t1000\t1000\n")

        // The defaults: root and libvirt-qemu. alice's QEMU is ignored, with why.
        let discovery = QEMUGuestDiscovery(procRoot: proc.root, libvirtRunDirectory: "\(proc.root)/none", trust: ProcessTrust(allowedUIDs: [0, 64055]))
        #expect(discovery.refresh().isEmpty)
        let ignored = try #require(discovery.untrusted[300])
        #expect(ignored.reason == "it runs as uid 1000, not root or a configured hypervisor user (qemu.hypervisor_users)")
        #expect(ignored.claimedName == "web")

        // Even with alice among the hypervisor users, it is libvirt's (its master key): found
        // only through a libvirt connection to her session, which samepaged never makes unless
        // libvirt.uri names it.
        let trusting = QEMUGuestDiscovery(procRoot: proc.root, libvirtRunDirectory: "\(proc.root)/none", trust: ProcessTrust(allowedUIDs: [0, 1000]))
        let found = trusting.refresh()
        #expect(found.map(\.pid) == [300])
        #expect(found.first?.managedByLibvirt == .masterKey(key))
        #expect(found.first?.uid == 1000)
    }
}

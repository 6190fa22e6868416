import Glibc
import Foundation
import GuestMemory
import Testing

@Suite struct VhostUserSocketPathTests {
    @Test("Chardev paths of vhost-user devices, in libvirt's JSON and QemuOpts spellings; other chardevs are not")
    func commandLine() {
        let arguments = [
            "/usr/bin/qemu-system-x86_64", "-name", "guest=vu,debug-threads=on",
            "-chardev", "socket,id=charmonitor,fd=28,server=on,wait=off",
            "-chardev", "socket,id=chr-vu-fs0,path=/var/lib/libvirt/qemu/domain-5-vu/fs0-fs.sock",
            "-device", #"{"driver":"vhost-user-fs-pci","id":"fs0","chardev":"chr-vu-fs0","tag":"share","bus":"pci.0","addr":"0x2"}"#,
            "-chardev", "socket,id=charnet0,path=/run/ovs/vhu0,,x,server=on",
            "-netdev", "vhost-user,chardev=charnet0,id=hostnet0",
            "-chardev", "socket,id=chr-vu-disk,path=/run/vhost/blk.sock",
            "-device", "vhost-user-blk-pci,chardev=chr-vu-disk,id=virtio-disk1",
            "-chardev", "socket,id=charchannel0,path=/var/lib/libvirt/qemu/channel/target/org.qemu.guest_agent.0",
            "-device", #"{"driver":"virtserialport","chardev":"charchannel0","id":"channel0"}"#,
            "-netdev", #"{"type":"vhost-user","chardev":"charnet1","id":"hostnet1"}"#,
            "-chardev", "socket,id=charnet1,path=/run/dpdk/vhu1",
            "-chardev", #"{"id":"chr-vu-fs1","backend":{"type":"socket","data":{"addr":{"type":"unix","data":{"path":"/run/fs1.sock"}},"server":false}}}"#,
            "-device", #"{"driver":"vhost-user-fs-pci","id":"fs1","chardev":"chr-vu-fs1","tag":"b"}"#,
        ]
        #expect(QEMUCommandLine.vhostUserSocketPaths(arguments: arguments) == [
            "/var/lib/libvirt/qemu/domain-5-vu/fs0-fs.sock", "/run/ovs/vhu0,x", "/run/vhost/blk.sock", "/run/dpdk/vhu1",
            "/run/fs1.sock",
        ])
        #expect(QEMUCommandLine.vhostUserSocketPaths(arguments: Array(arguments.prefix(5))).isEmpty, "a chardev no vhost-user device uses")
    }
}

/// A listening Unix socket, a client connected to it and the accepted end; closed at the end.
struct SocketPair {
    let listener: Int32, client: Int32, accepted: Int32
    let path: String

    init() throws {
        let path = "/tmp/samepage-vhost-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        unlink(path)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(path.utf8) + [0])
        }
        let length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        let client = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) } }
        try #require(bound == 0 && listen(listener, 4) == 0)
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, length) } }
        try #require(connected == 0)
        let accepted = accept(listener, nil, nil)
        try #require(accepted >= 0)
        (self.path, self.listener, self.client, self.accepted) = (path, listener, client, accepted)
    }

    func close() {
        _ = Glibc.close(listener); _ = Glibc.close(client); _ = Glibc.close(accepted)
        unlink(path)
    }

    static func inode(_ fd: Int32) -> UInt32 {
        var status = stat()
        fstat(fd, &status)
        return UInt32(status.st_ino)
    }
}

@Suite struct VhostUserBackendsTests {
    @Test("sock_diag shows names, also on accepted connections, and peers both ways")
    func socketTable() throws {
        let pair = try SocketPair()
        defer { pair.close() }
        let table = try UnixSocketTable.current()
        let listener = SocketPair.inode(pair.listener), client = SocketPair.inode(pair.client), accepted = SocketPair.inode(pair.accepted)
        #expect(table[listener]?.name == pair.path)
        #expect(table[listener]?.peer == nil)
        #expect(table[accepted]?.name == pair.path, "an accepted connection carries its listener's path")
        #expect(table[accepted]?.peer == client)
        #expect(table[client]?.name == nil)
        #expect(table[client]?.peer == accepted)
        #expect(UnixSocketTable.sockets(of: getpid()).isSuperset(of: [listener, client, accepted]))
    }

    @Test("A mapper is a backend only when connected to this QEMU on one of the guest's sockets")
    func identify() throws {
        let pair = try SocketPair()
        defer { pair.close() }
        let table = try UnixSocketTable.current()
        let listener = SocketPair.inode(pair.listener), client = SocketPair.inode(pair.client), accepted = SocketPair.inode(pair.accepted)
        let qemu: pid_t = 100, backend: pid_t = 200, stranger: pid_t = 300
        let paths: Set<String> = [pair.path]

        // The backend listens (virtiofsd): QEMU holds the client end.
        var sockets: [pid_t: Set<UInt32>] = [qemu: [client], backend: [listener, accepted], stranger: []]
        #expect(VhostUserBackends.identify(qemu: qemu, mappers: [backend, stranger], socketPaths: paths, table: table,
                                           socketsOf: { sockets[$0] ?? [] }) == [backend: pair.path])
        // QEMU listens (vhost-user server mode): the backend holds the unnamed client end.
        sockets = [qemu: [listener, accepted], backend: [client]]
        #expect(VhostUserBackends.identify(qemu: qemu, mappers: [backend], socketPaths: paths, table: table,
                                           socketsOf: { sockets[$0] ?? [] }) == [backend: pair.path])
        // The same connection on a path that is not one of the guest's: not a backend.
        #expect(VhostUserBackends.identify(qemu: qemu, mappers: [backend], socketPaths: ["/run/other.sock"], table: table,
                                           socketsOf: { sockets[$0] ?? [] }).isEmpty)
        // Connected on the path, but not to this QEMU (its peer is another process).
        sockets = [qemu: [], backend: [client], stranger: [listener, accepted]]
        #expect(VhostUserBackends.identify(qemu: qemu, mappers: [backend], socketPaths: paths, table: table,
                                           socketsOf: { sockets[$0] ?? [] }).isEmpty)
        // A process merely holding the listening socket, with no connection to QEMU.
        sockets = [qemu: [client], backend: [listener]]
        #expect(VhostUserBackends.identify(qemu: qemu, mappers: [backend], socketPaths: paths, table: table,
                                           socketsOf: { sockets[$0] ?? [] }).isEmpty)
    }
}

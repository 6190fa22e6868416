import Foundation
import Glibc
import LinuxSystem
@testable import QEMUGuests
import Testing

@Suite("QMP socket trust: the socket, its directories and its listener are its QEMU's")
struct QMPSocketTrustTests {
    /// libvirt-qemu's uid on Debian.
    private let qemuUID: uid_t = 64055

    private func entry(_ path: String, owner: uid_t = 0, mode: mode_t) -> QMPSocketTrust.Entry {
        QMPSocketTrust.Entry(path: path, owner: owner, mode: mode)
    }

    /// `/run/qemu-server/101.qmp` as Proxmox VE has it, reached through `/var/run`.
    private func proxmox(socketOwner: uid_t = 0, socketMode: mode_t = S_IFSOCK | 0o755,
                         serverDirectory: QMPSocketTrust.Entry? = nil) -> QMPSocketTrust.Facts {
        QMPSocketTrust.Facts(
            socket: entry("/var/run/qemu-server/101.qmp", owner: socketOwner, mode: socketMode),
            directories: [
                entry("/", mode: S_IFDIR | 0o755), entry("/var", mode: S_IFDIR | 0o755),
                entry("/var/run", mode: S_IFLNK | 0o777), entry("/run", mode: S_IFDIR | 0o755),
                serverDirectory ?? entry("/run/qemu-server", mode: S_IFDIR | 0o755),
            ],
            parents: ["/var/run/qemu-server", "/run/qemu-server"])
    }

    @Test("root's socket in root's directories, through a root-owned link, is trusted")
    func proxmoxTrusted() {
        #expect(QMPSocketTrust.untrustedReason(proxmox(), qemuUID: 0) == nil)
        // The QEMU's own user may own the socket and its directory.
        let own = proxmox(socketOwner: qemuUID, serverDirectory: entry("/run/qemu-server", owner: qemuUID, mode: S_IFDIR | 0o750))
        #expect(QMPSocketTrust.untrustedReason(own, qemuUID: qemuUID) == nil)
    }

    @Test("a socket owned by another user, a link, or not a socket is refused")
    func socketItself() {
        #expect(QMPSocketTrust.untrustedReason(proxmox(socketOwner: 65534), qemuUID: 0)
            == "its QMP socket /var/run/qemu-server/101.qmp is owned by uid 65534, not root or its QEMU's uid 0")
        // Root's socket is fine for a QEMU of another user; another user's is not.
        #expect(QMPSocketTrust.untrustedReason(proxmox(socketOwner: 65534), qemuUID: qemuUID) != nil)
        #expect(QMPSocketTrust.untrustedReason(proxmox(socketMode: S_IFLNK | 0o777), qemuUID: 0)
            == "its QMP socket /var/run/qemu-server/101.qmp is a symbolic link")
        #expect(QMPSocketTrust.untrustedReason(proxmox(socketMode: S_IFREG | 0o644), qemuUID: 0)
            == "its QMP socket /var/run/qemu-server/101.qmp is not a socket")
    }

    @Test("a directory others may write, or owned by another user, is refused")
    func directories() {
        let groupWritable = proxmox(serverDirectory: entry("/run/qemu-server", mode: S_IFDIR | 0o775))
        #expect(QMPSocketTrust.untrustedReason(groupWritable, qemuUID: 0)
            == "/run/qemu-server, above its QMP socket, is writable by others (mode 775)")
        let foreign = proxmox(serverDirectory: entry("/run/qemu-server", owner: 1000, mode: S_IFDIR | 0o755))
        #expect(QMPSocketTrust.untrustedReason(foreign, qemuUID: 0)
            == "/run/qemu-server, above its QMP socket, is owned by uid 1000, not root or its QEMU's uid 0")
        let file = proxmox(serverDirectory: entry("/run/qemu-server", mode: S_IFREG | 0o755))
        #expect(QMPSocketTrust.untrustedReason(file, qemuUID: 0) == "/run/qemu-server, above its QMP socket, is not a directory")
    }

    @Test("a sticky root directory may be above the socket's directory, never be it")
    func sticky() {
        let below = QMPSocketTrust.Facts(
            socket: entry("/tmp/vm/qmp.sock", mode: S_IFSOCK | 0o755),
            directories: [entry("/", mode: S_IFDIR | 0o755), entry("/tmp", mode: S_IFDIR | 0o1777), entry("/tmp/vm", mode: S_IFDIR | 0o700)])
        #expect(QMPSocketTrust.untrustedReason(below, qemuUID: 0) == nil)
        let inside = QMPSocketTrust.Facts(
            socket: entry("/dev/shm/q", mode: S_IFSOCK | 0o755),
            directories: [entry("/", mode: S_IFDIR | 0o755), entry("/dev", mode: S_IFDIR | 0o755), entry("/dev/shm", mode: S_IFDIR | 0o1777)])
        #expect(QMPSocketTrust.untrustedReason(inside, qemuUID: 0) == "/dev/shm, above its QMP socket, is writable by others (mode 1777)")
        // Sticky, but not root's: its owner could remove anyone's entries.
        let notRoot = QMPSocketTrust.Facts(
            socket: entry("/srv/x/vm/q", mode: S_IFSOCK | 0o755),
            directories: [entry("/", mode: S_IFDIR | 0o755), entry("/srv/x", owner: qemuUID, mode: S_IFDIR | 0o1777),
                          entry("/srv/x/vm", mode: S_IFDIR | 0o700)])
        #expect(QMPSocketTrust.untrustedReason(notRoot, qemuUID: qemuUID) == "/srv/x, above its QMP socket, is writable by others (mode 1777)")
    }

    @Test("the listener must be the QEMU or run as its uid")
    func peer() {
        let path = "/run/qemu-server/101.qmp"
        #expect(QMPSocketTrust.peerMismatch(PeerCredentials(pid: 4242, uid: 0, gid: 0), qemuPID: 4242, qemuUID: qemuUID, path: path) == nil)
        // A daemonized QEMU bound its socket before it forked: another pid, its uid.
        #expect(QMPSocketTrust.peerMismatch(PeerCredentials(pid: 4241, uid: qemuUID, gid: 0), qemuPID: 4242, qemuUID: qemuUID, path: path) == nil)
        #expect(QMPSocketTrust.peerMismatch(PeerCredentials(pid: 999, uid: 65534, gid: 65534), qemuPID: 4242, qemuUID: qemuUID, path: path)
            == "its QMP socket /run/qemu-server/101.qmp is served by pid 999 (uid 65534), not its QEMU 4242 or its uid 64055")
    }

    @Test("parent and prefixes of a path")
    func paths() {
        #expect(QMPSocketTrust.parentPath("/run/qemu-server/101.qmp") == "/run/qemu-server")
        #expect(QMPSocketTrust.parentPath("/q.sock") == "/")
        #expect(QMPSocketTrust.prefixesOf("/run/qemu-server") == ["/", "/run", "/run/qemu-server"])
    }
}

@Suite(
    "QMP socket trust on real sockets", .serialized,
    .enabled(if: getuid() == 0, "chowns sockets and directories to nobody, which needs root"))
struct QMPSocketTrustFileTests {
    /// A listening socket at `path`; closed by the caller.
    private func listen(at path: String) throws -> UnixSocket {
        let socket = try UnixSocket.stream()
        let address = try UnixSocketAddress(path: path)
        let bound = address.withSockaddr { bind(socket.descriptor.rawValue, $0, $1) }
        #expect(bound == 0)
        #expect(Glibc.listen(socket.descriptor.rawValue, 4) == 0)
        return socket
    }

    @Test("the kernel's facts of a socket: its owner, a link to it, its directory's mode, its listener")
    func realSocket() throws {
        var template = Array("/tmp/samepage-qmptrust-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw SystemError("mkdtemp") }
        let directory = String(cString: template)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/vm/qmp.sock"
        #expect(mkdir("\(directory)/vm", 0o700) == 0)
        let listener = try listen(at: path)

        let facts = try QMPSocketTrust.facts(path: path)
        #expect(facts.socket.mode & S_IFMT == S_IFSOCK)
        #expect(facts.directories.map(\.path).starts(with: ["/", "/tmp", directory, "\(directory)/vm"]))
        // /tmp is sticky and root's: above the socket's own directory (0700), fine.
        #expect(QMPSocketTrust.untrustedReason(facts, qemuUID: 0) == nil)

        // Given to nobody: a root QEMU's socket may not be nobody's; nobody's QEMU's may.
        #expect(chown(path, 65534, 65534) == 0)
        let chowned = try QMPSocketTrust.facts(path: path)
        #expect(QMPSocketTrust.untrustedReason(chowned, qemuUID: 0)?.contains("owned by uid 65534") == true)
        #expect(QMPSocketTrust.untrustedReason(chowned, qemuUID: 65534) == nil)

        // The directory opened to everyone.
        #expect(chmod("\(directory)/vm", 0o777) == 0)
        let open = try QMPSocketTrust.facts(path: path)
        #expect(QMPSocketTrust.untrustedReason(open, qemuUID: 65534) == "\(directory)/vm, above its QMP socket, is writable by others (mode 777)")
        #expect(chmod("\(directory)/vm", 0o700) == 0)

        // A link named as the socket is never followed.
        #expect(symlink(path, "\(directory)/vm/link.sock") == 0)
        let link = try QMPSocketTrust.facts(path: "\(directory)/vm/link.sock")
        #expect(QMPSocketTrust.untrustedReason(link, qemuUID: 0) == "its QMP socket \(directory)/vm/link.sock is a symbolic link")

        // A directory reached through a link is checked where it really is, too.
        #expect(symlink("\(directory)/vm", "\(directory)/alias") == 0)
        let aliased = try QMPSocketTrust.facts(path: "\(directory)/alias/qmp.sock")
        #expect(aliased.directories.map(\.path).contains("\(directory)/vm"))
        #expect(aliased.parents == ["\(directory)/alias", "\(directory)/vm"])

        // The listener, as the kernel saw it: this process, root, even though the file is nobody's.
        let client = try UnixSocket.stream()
        #expect(client.connect(to: try UnixSocketAddress(path: path)) == nil)
        let credentials = client.peerCredentials()
        let peer = try #require(credentials)
        #expect(peer.pid == getpid())
        #expect(peer.uid == 0)
        #expect(QMPSocketTrust.peerMismatch(peer, qemuPID: 1, qemuUID: 65534, path: path) != nil)
        #expect(QMPSocketTrust.peerMismatch(peer, qemuPID: getpid(), qemuUID: 65534, path: path) == nil)
        client.close()
        listener.close()
    }
}

import Glibc
import LinuxSystem
import QEMUGuests
import QMP

/// The one way samepaged connects to the QMP socket of a QEMU outside libvirt: only to a
/// socket the kernel's facts make that QEMU's (``QMPSocketTrust``), checked before the
/// connection and, by its listener's credentials, after it, before a byte is read or sent.
enum TrustedQMP {
    /// Connects to `socket`, named by the QEMU `pid` running as `uid`, when its file, its
    /// directories and its listener are that QEMU's.
    ///
    /// - Throws: ``QMPError/untrustedPeer(path:detail:)`` when they are not (or cannot be
    ///   checked); ``QMPError/noServer(path:errno:)`` when there is no socket; what
    ///   ``QMPConnection/connect(path:timeout:maximumMessageLength:peerCheck:)`` throws.
    @available(*, noasync, message: "blocks the calling thread for up to its timeout")
    static func connect(socket: String, pid: pid_t, uid: uid_t, timeout: Duration) throws(QMPError) -> QMPConnection {
        let facts: QMPSocketTrust.Facts
        do { facts = try QMPSocketTrust.facts(path: socket) } catch {
            if error.errno == .noSuchFileOrDirectory || error.errno == .notDirectory {
                throw .noServer(path: socket, errno: error.errno)
            }
            throw .untrustedPeer(path: socket, detail: "its QMP socket \(socket) cannot be checked (\(error))")
        }
        if let why = QMPSocketTrust.untrustedReason(facts, qemuUID: uid) { throw .untrustedPeer(path: socket, detail: why) }
        return try QMPConnection.connect(path: socket, timeout: timeout) { peer in
            QMPSocketTrust.peerMismatch(peer, qemuPID: pid, qemuUID: uid, path: socket)
        }
    }

    /// Connects to the QMP socket of a tracked QEMU (``connect(socket:pid:uid:timeout:)``).
    @available(*, noasync, message: "blocks the calling thread for up to its timeout")
    static func connect(_ handle: QEMUGuestHandle, socket: String, timeout: Duration) throws(QMPError) -> QMPConnection {
        try connect(socket: socket, pid: handle.pid, uid: handle.uid, timeout: timeout)
    }
}

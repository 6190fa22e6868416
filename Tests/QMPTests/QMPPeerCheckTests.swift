import Foundation
import Glibc
import LinuxSystem
import QMP
import Testing

/// The listener's credentials are judged before anything is read or sent.
@Suite("QMP connection: who listens", .serialized) struct QMPPeerCheckTests {
    @Test("the check sees the listener's pid and uid; accepted, the handshake goes on")
    func accepted() throws {
        let server = try FakeQMPServer(FakeQMPServer.handshake + [.awaitHangUp])
        let seen = SeenPeers()
        do {
            _ = try QMPConnection.connect(path: server.path, timeout: .seconds(5)) { peer in
                seen.add(peer)
                return nil
            }
        }
        // The fake QEMU is a thread of this process.
        #expect(seen.all == [PeerCredentials(pid: getpid(), uid: getuid(), gid: getgid())])
        #expect(server.requests().map(\.execute) == ["qmp_capabilities"])
    }

    @Test("refused, nothing is sent: not even qmp_capabilities")
    func refused() throws {
        let server = try FakeQMPServer([.send(FakeQMPServer.greeting), .awaitHangUp])
        do {
            let error = #expect(throws: QMPError.self) {
                _ = try QMPConnection.connect(path: server.path, timeout: .seconds(5)) { _ in "served by pid 999 (uid 65534)" }
            }
            #expect(error == .untrustedPeer(path: server.path, detail: "served by pid 999 (uid 65534)"))
            #expect(error?.description == "served by pid 999 (uid 65534); it is not used")
            #expect(error?.path == server.path)
        }
        #expect(server.requests().isEmpty)
    }
}

/// Peers a check saw, from the connecting thread.
private final class SeenPeers: @unchecked Sendable {
    private var peers: [PeerCredentials] = []
    func add(_ peer: PeerCredentials) { peers.append(peer) }
    var all: [PeerCredentials] { peers }
}

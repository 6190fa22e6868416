import Glibc
import LinuxSystem

// The Unix socket itself (address, owner, connect, sendAll, the line framing) is
// LinuxSystem's ``UnixSocket``, shared with the QMP client; what is here is what the control
// protocol makes of it.

extension UnixSocket {
    /// A new blocking Unix stream socket, close-on-exec.
    static func controlStream() throws(ControlError) -> UnixSocket {
        do { return try UnixSocket.stream() } catch { throw ControlError(error) }
    }
}

extension UnixSocketAddress {
    /// The address of the control socket at `path`.
    init(controlPath path: String) throws(ControlError) {
        do { try self.init(path: path) } catch { throw .pathTooLong(path: path) }
    }
}

/// What reading the next line from a connection gave.
enum LineRead {
    /// A line, newline removed (at the end of the stream, the unterminated rest).
    case line([UInt8])
    /// The stream ended.
    case end
    /// More than the limit arrived without a newline.
    case tooLong
    /// Nothing arrived within the receive timeout.
    case timedOut
    /// `recv` failed with this errno.
    case failed(Int32)
}

/// Splits a blocking socket's byte stream into newline-terminated lines, with a cap on their
/// length; the unterminated rest of a stream that ended is a line too.
struct LineReader {
    private var lines: LineBuffer
    private var ended = false

    init(limit: Int) { lines = LineBuffer(limit: limit) }

    var limit: Int { lines.limit }

    /// The next line, waiting until `deadline` at most: an absolute bound that bytes arriving
    /// slowly cannot extend (each wait is for the time left, `SO_RCVTIMEO`).
    mutating func next(from socket: borrowing UnixSocket, until deadline: ContinuousClock.Instant) -> LineRead {
        next(from: socket, deadline: deadline)
    }

    /// The next line, under the socket's own receive timeout.
    mutating func next(from socket: borrowing UnixSocket) -> LineRead {
        next(from: socket, deadline: nil)
    }

    private mutating func next(from socket: borrowing UnixSocket, deadline: ContinuousClock.Instant?) -> LineRead {
        while true {
            switch lines.nextLine() {
            case .line(let line)?: return .line(Array(line))
            case .tooLong?: return .tooLong
            case nil: break
            }
            if ended {
                guard let rest = lines.takeRemainder() else { return .end }
                return .line(rest)
            }
            if let deadline {
                let left = deadline - .now
                guard left > .zero else { return .timedOut }
                socket.setTimeouts(receive: max(left, .milliseconds(1)))
            }
            switch lines.receive(from: socket.descriptor) {
            case .received: continue
            case .end: ended = true
            case .failed(.wouldBlock): return .timedOut
            case .failed(let errno): return .failed(errno.rawValue)
            }
        }
    }
}

// MARK: - Peer credentials

/// The process at the other end of a control connection, as the kernel saw it when it
/// connected (`SO_PEERCRED`): LinuxSystem's one reading of it.
public typealias ControlPeer = PeerCredentials

/// `SO_PEERGROUPS` (Linux 4.13): the peer's supplementary groups at connect time. Its value
/// is 59 on every architecture Swift supports on Linux (asm-generic).
private let soPeerGroups: Int32 = 59

/// The supplementary groups of a connected peer: from `SO_PEERGROUPS`, or, on kernels
/// without it, from `/proc/PID/status` (only while that process still has the peer's uid).
func supplementaryGroups(of socket: borrowing UnixSocket, peer: ControlPeer) -> [gid_t] {
    var groups = [gid_t](repeating: 0, count: 64)
    while true {
        var length = socklen_t(groups.count * MemoryLayout<gid_t>.size)
        let result = groups.withUnsafeMutableBytes {
            getsockopt(socket.descriptor.rawValue, SOL_SOCKET, soPeerGroups, $0.baseAddress, &length)
        }
        if result == 0 { return Array(groups.prefix(Int(length) / MemoryLayout<gid_t>.size)) }
        if errno == ERANGE, Int(length) > groups.count * MemoryLayout<gid_t>.size {
            groups = [gid_t](repeating: 0, count: Int(length) / MemoryLayout<gid_t>.size + 1)
            continue
        }
        if errno == ENOPROTOOPT { return procStatusGroups(of: peer) }
        return []
    }
}

/// The `Groups:` line of `/proc/PID/status`, if its real uid is still the peer's (the pid
/// may have been reused).
func procStatusGroups(of peer: ControlPeer) -> [gid_t] {
    guard let bytes = try? readWholeFile("/proc/\(peer.pid)/status", limit: 65536) else { return [] }
    let status = String(decoding: bytes, as: UTF8.self)
    var uidMatches = false
    var groups: [gid_t] = []
    for line in status.split(separator: "\n") {
        if line.hasPrefix("Uid:") {
            uidMatches = line.dropFirst(4).split(whereSeparator: \.isWhitespace).first.flatMap { uid_t($0) } == peer.uid
        } else if line.hasPrefix("Groups:") {
            groups = line.dropFirst(7).split(whereSeparator: \.isWhitespace).compactMap { gid_t($0) }
        }
    }
    return uidMatches ? groups : []
}

import Glibc
import LinuxSystem

/// Why a QMP connection could not be made or a command got no answer.
///
/// Each case names the monitor socket's path, so that an operator reading a log line knows
/// which guest's QEMU it is about. What a caller does differs by case: ``noServer(path:errno:)``
/// means no QEMU (it exited, or never ran); ``busy(path:timeout:)`` means a QEMU that serves
/// another client now, to try again later; ``timedOut(path:command:timeout:)`` and
/// ``closed(path:)`` mean this connection is of no more use for the command (a reply that
/// comes late is skipped by its id); ``commandFailed(path:command:errorClass:description:)``
/// is QEMU's own refusal, with the connection fine; ``flood(path:detail:)`` is a QEMU that
/// sends far more than it was asked for (hostile, or broken), to leave alone for a while.
public enum QMPError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Nothing serves the socket: there is no socket at the path (`ENOENT`, `ENOTDIR`), or no
    /// process listens on it any more (`ECONNREFUSED`, a QEMU that exited).
    case noServer(path: String, errno: Errno)
    /// The socket accepted the connection but sent no greeting within the timeout (or its
    /// listen backlog is full, `EAGAIN`): QEMU serves one monitor client at a time, and
    /// another one (libvirt, `qm monitor`, a second agent) holds it.
    case busy(path: String, timeout: Duration)
    /// `command` got no reply within the timeout.
    case timedOut(path: String, command: String, timeout: Duration)
    /// QEMU closed the connection (it exited, or dropped this client).
    case closed(path: String)
    /// QEMU sent something that is not QMP: not JSON, a line longer than the limit, or a
    /// reply without the members its command returns.
    case protocolViolation(path: String, detail: String)
    /// QEMU refused `command`: QMP's `{"error": {"class": …, "desc": …}}`. `errorClass` is
    /// `GenericError` for nearly everything; `CommandNotFound`, `DeviceNotActive`,
    /// `DeviceNotFound` and `KVMMissingCap` are the others.
    case commandFailed(path: String, command: String, errorClass: String, description: String)
    /// QEMU sent more events than wait to be taken
    /// (``QMPConnection/maximumPendingEvents``), or more messages no command asked for (events,
    /// blank lines, replies to commands that timed out) between two commands than
    /// ``QMPConnection/maximumUnsolicitedMessages``. The connection is broken.
    case flood(path: String, detail: String)
    /// The socket, or the process listening on it, is not one samepaged may trust with this
    /// guest (its owner, its directory, or its listener's credentials); `detail` says why.
    /// Nothing was sent to it.
    case untrustedPeer(path: String, detail: String)
    /// A system call failed (`socket`, `poll`, `recv`, `send`, `connect` with another errno).
    case system(SystemError)

    /// The socket path this error is about, where it has one.
    public var path: String? {
        switch self {
        case .noServer(let path, _), .busy(let path, _), .timedOut(let path, _, _), .closed(let path),
            .protocolViolation(let path, _), .commandFailed(let path, _, _, _), .flood(let path, _),
            .untrustedPeer(let path, _):
            path
        case .system:
            nil
        }
    }

    public var description: String {
        switch self {
        case .noServer(let path, let errno):
            if errno == .connectionRefused { return "no QEMU listens on the monitor socket \(path) (connection refused)" }
            return "no QEMU monitor socket at \(path) (\(errno))"
        case .busy(let path, let timeout):
            return "the QEMU monitor at \(path) sent no greeting within \(timeout): another client holds it"
        case .timedOut(let path, let command, let timeout):
            return "the QEMU monitor at \(path) did not answer \(command) within \(timeout)"
        case .closed(let path):
            return "the QEMU monitor at \(path) closed the connection"
        case .protocolViolation(let path, let detail):
            return "the QEMU monitor at \(path) broke the QMP protocol: \(detail)"
        case .commandFailed(let path, let command, let errorClass, let description):
            return "QEMU at \(path) refused \(command): \(description) (\(errorClass))"
        case .flood(let path, let detail):
            return "the QEMU monitor at \(path) floods its client: \(detail)"
        case .untrustedPeer(_, let detail):
            return "\(detail); it is not used"
        case .system(let error):
            return error.description
        }
    }
}

import Glibc
import LinuxSystem

/// Why a control server could not start or a client could not get an answer.
///
/// Failures of a request the daemon understood are not thrown as these: they come back as
/// ``ControlResponse/failure(_:)`` (except `permission_denied`, which is
/// ``permissionDenied(path:detail:)``).
public enum ControlError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Another daemon answers on the socket: a second one must not start.
    case alreadyRunning(path: String)
    /// No daemon: there is no socket at the path (`ENOENT`), or nothing listens on it
    /// (`ECONNREFUSED`, a stale socket).
    case daemonNotRunning(path: String, errno: Int32)
    /// The socket refused this process: the filesystem (`EACCES`, `EPERM`) or the daemon's
    /// check of the peer's credentials.
    case permissionDenied(path: String, detail: String)
    /// The daemon serves too many connections already.
    case busy(path: String)
    /// The path does not fit in a `sockaddr_un` (107 bytes).
    case pathTooLong(path: String)
    /// Something other than a socket is at the path; the server leaves it alone.
    case notASocket(path: String)
    /// A system call failed.
    case system(operation: String, errno: Int32)
    /// The daemon did not answer in time.
    case timedOut(path: String, timeout: Duration)
    /// The daemon closed the connection without answering.
    case connectionClosed(path: String)
    /// The daemon's answer is not valid protocol.
    case invalidResponse(String)
    /// The daemon answered with a failure (from ``ControlClient/call(_:)``).
    case failed(ControlFailure)

    /// A failed call, as ``system(operation:errno:)``.
    init(_ error: SystemError) {
        self = .system(operation: error.operation, errno: error.errno.rawValue)
    }

    /// The errno this error carries, if any.
    public var errno: Int32? {
        switch self {
        case .daemonNotRunning(_, let errno), .system(_, let errno): errno
        default: nil
        }
    }

    public var description: String {
        switch self {
        case .alreadyRunning(let path):
            return "samepaged is already running (it answers on \(path))"
        case .daemonNotRunning(let path, let errno):
            if errno == ECONNREFUSED { return "connection refused at \(path): is samepaged running?" }
            return "samepaged is not running (no socket at \(path))"
        case .permissionDenied(let path, let detail):
            return "permission denied on \(path): \(detail)"
        case .busy(let path):
            return "samepaged at \(path) serves too many connections; try again"
        case .pathTooLong(let path):
            return "socket path is too long (at most 107 bytes): \(path)"
        case .notASocket(let path):
            return "\(path) exists and is not a socket; not touching it"
        case .system(let operation, let errno):
            return SystemError(errno: Errno(rawValue: errno), operation: operation).description
        case .timedOut(let path, let timeout):
            return "samepaged at \(path) did not answer within \(timeout)"
        case .connectionClosed(let path):
            return "samepaged at \(path) closed the connection without answering"
        case .invalidResponse(let message):
            return message
        case .failed(let failure):
            return failure.description
        }
    }
}

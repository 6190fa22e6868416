import Glibc
import LinuxSystem
import Synchronization

/// A connection to samepaged's control socket: sends requests one at a time and reads each
/// one's response, with a timeout.
///
/// One connection serves any number of requests; calls from several threads take turns.
/// The socket is closed by ``close()`` or when the client is dropped.
public final class ControlClient: Sendable {
    /// The socket's path.
    public let path: String
    /// How long to wait for the daemon to accept a request and to answer it.
    public let timeout: Duration
    /// The longest response line read (64 MiB).
    public static let maximumResponseLength = 64 << 20

    private let connection: Mutex<Connection>

    private struct Connection: ~Copyable {
        var socket: UnixSocket?
        var reader = LineReader(limit: ControlClient.maximumResponseLength)
        var nextID = 1
    }

    /// Connects to the daemon at `path`.
    ///
    /// Throws ``ControlError/daemonNotRunning(path:errno:)`` when there is no socket
    /// (`ENOENT`) or nothing listens on it (`ECONNREFUSED`),
    /// ``ControlError/permissionDenied(path:detail:)`` when the filesystem refuses
    /// (`EACCES`, `EPERM`), ``ControlError/timedOut(path:timeout:)`` when the daemon's
    /// backlog stays full.
    public init(path: String, timeout: Duration = .seconds(30)) throws(ControlError) {
        self.path = path
        self.timeout = timeout
        let address = try UnixSocketAddress(controlPath: path)
        let socket = try UnixSocket.controlStream()
        socket.setTimeouts(receive: timeout, send: timeout)
        if let error = socket.connect(to: address)?.rawValue {
            switch error {
            case ENOENT, ECONNREFUSED, ENOTDIR:
                throw .daemonNotRunning(path: path, errno: error)
            case EACCES, EPERM:
                throw .permissionDenied(path: path, detail: Errno(rawValue: error).description)
            case EAGAIN, ETIMEDOUT:
                throw .timedOut(path: path, timeout: timeout)
            default:
                throw .system(operation: "connect to \(path)", errno: error)
            }
        }
        connection = Mutex(Connection(socket: socket))
    }

    /// Sends `request` and returns the daemon's response.
    ///
    /// Failures the daemon reports for the request come back as
    /// ``ControlResponse/failure(_:)``; those about the connection are thrown:
    /// `permission_denied` as ``ControlError/permissionDenied(path:detail:)``, `busy` as
    /// ``ControlError/busy(path:)``.
    public func send(_ request: ControlRequest) throws(ControlError) -> ControlResponse {
        let path = path
        let timeout = timeout
        return try connection.withLock { (connection: inout Connection) throws(ControlError) -> ControlResponse in
            guard let socket = connection.socket.take() else { throw .connectionClosed(path: path) }
            let id = connection.nextID
            connection.nextID += 1
            let outcome = Self.exchange(
                ControlCodec.encode(request, id: id), on: socket, reader: &connection.reader, path: path, timeout: timeout)
            let line: [UInt8]
            switch outcome {
            case .success(let received):
                line = received
                connection.socket = consume socket
            case .failure(let error):
                socket.close()
                throw error
            }
            let (responseID, response) = try ControlCodec.decodeResponse(line, for: request.command)
            if case .failure(let failure) = response {
                switch failure.code {
                case .permissionDenied: throw .permissionDenied(path: path, detail: failure.message)
                case .busy: throw .busy(path: path)
                default: break
                }
            }
            guard responseID == id || (responseID == nil && response.isFailure) else {
                throw .invalidResponse("the daemon answered request \(id) with the response to \(responseID.map(String.init) ?? "null")")
            }
            return response
        }
    }

    /// Sends `request` and returns its result; a failure is thrown as
    /// ``ControlError/failed(_:)``.
    public func call(_ request: ControlRequest) throws(ControlError) -> ControlResult {
        switch try send(request) {
        case .success(let result): return result
        case .failure(let failure): throw .failed(failure)
        }
    }

    /// Closes the connection; later calls throw ``ControlError/connectionClosed(path:)``.
    public func close() {
        connection.withLock { $0.socket = nil }
    }

    /// Writes a request line and reads one response line.
    private static func exchange(
        _ bytes: [UInt8], on socket: borrowing UnixSocket, reader: inout LineReader, path: String,
        timeout: Duration
    ) -> Result<[UInt8], ControlError> {
        let sendError = socket.sendAll(bytes)?.rawValue
        switch sendError {
        case nil, EPIPE?, ECONNRESET?:
            // A daemon that refused this peer has answered and closed already: read its answer.
            break
        case EAGAIN?, EWOULDBLOCK?:
            return .failure(.timedOut(path: path, timeout: timeout))
        case let error?:
            return .failure(.system(operation: "send to \(path)", errno: error))
        }
        switch reader.next(from: socket) {
        case .line(let line):
            return .success(line)
        case .end:
            return .failure(.connectionClosed(path: path))
        case .timedOut:
            return .failure(.timedOut(path: path, timeout: timeout))
        case .tooLong:
            return .failure(.invalidResponse("the daemon's response is longer than \(maximumResponseLength) bytes"))
        case .failed(let error):
            if error == ECONNRESET { return .failure(.connectionClosed(path: path)) }
            return .failure(.system(operation: "receive from \(path)", errno: error))
        }
    }
}

extension ControlResponse {
    var isFailure: Bool {
        if case .failure = self { return true }
        return false
    }
}

import CLibvirt
import Foundation

/// An error reported by libvirt, with the code, domain and message of its `virError`.
public struct LibvirtError: Error, Sendable, Hashable, CustomStringConvertible {
    /// libvirt's error number (`virErrorNumber`, e.g. 42 for `VIR_ERR_NO_DOMAIN`).
    public var code: Int32
    /// The part of libvirt that raised the error (`virErrorDomain`).
    public var domain: Int32
    /// libvirt's human-readable message.
    public var message: String
    /// The Swift wrapper operation that failed, such as `"virDomainSuspend"`.
    public var operation: String

    public init(code: Int32, domain: Int32, message: String, operation: String) {
        self.code = code
        self.domain = domain
        self.message = message
        self.operation = operation
    }

    /// Captures the calling thread's last libvirt error and clears it.
    static func last(_ operation: String) -> LibvirtError {
        guard let error = virGetLastError() else {
            return LibvirtError(code: -1, domain: 0, message: "unknown libvirt error", operation: operation)
        }
        let result = LibvirtError(
            code: error.pointee.code,
            domain: error.pointee.domain,
            message: error.pointee.message.map { String(cString: $0) } ?? "no message",
            operation: operation
        )
        virResetLastError()
        return result
    }

    /// The domain does not exist (any more).
    public var isNoDomain: Bool { code == Int32(VIR_ERR_NO_DOMAIN.rawValue) }

    /// The operation is invalid in the domain's current state (e.g. resuming a running domain).
    public var isOperationInvalid: Bool { code == Int32(VIR_ERR_OPERATION_INVALID.rawValue) }

    /// The connection to libvirtd is broken or could not be made (a closed connection reports
    /// `internal error: client socket is closed` from the RPC layer).
    public var isConnectionFailure: Bool {
        domain == Int32(VIR_FROM_RPC.rawValue)
            || [VIR_ERR_NO_CONNECT, VIR_ERR_SYSTEM_ERROR, VIR_ERR_RPC, VIR_ERR_INVALID_CONN, VIR_ERR_AUTH_FAILED]
                .contains { code == Int32($0.rawValue) }
    }

    public var description: String { "\(operation): \(message) (libvirt error \(code), domain \(domain))" }
}

/// Process-wide libvirt setup, done once before the first connection: thread-safe
/// initialisation, silencing libvirt's default printing of errors to stderr (errors reach
/// Swift as `LibvirtError` instead), and the default event loop running on its own thread.
enum LibvirtRuntime {
    static let ready: Void = {
        _ = virInitialize()
        virSetErrorFunc(nil) { _, _ in }
        _ = virEventRegisterDefaultImpl()
        let thread = Thread {
            while true {
                // Errors here are transient (a poll interrupted, a bad fd in a callback);
                // libvirt has already dropped the offending handle. Don't spin on them.
                if virEventRunDefaultImpl() < 0 {
                    virResetLastError()
                    usleep(10_000)
                }
            }
        }
        thread.name = "libvirt-events"
        thread.start()
    }()
}

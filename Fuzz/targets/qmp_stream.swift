import Glibc
import LinuxSystem
import SystemPackage

/// The byte stream a QEMU monitor socket delivers, cut into messages by `MessageReader`: any
/// number of "\r\n"-terminated JSON lines, blank lines, partial lines, overlong lines.
///
/// Untrusted for the same reason as `qmp_message` (the peer is a guest's QEMU); this target
/// adds the framing: `LineBuffer`'s line scan, buffer compaction and length limit (4 KiB
/// here, so that inputs reach it), and the blank lines between messages.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzQMPStream(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var pair: [Int32] = [0, 0]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else { fatalError("socketpair") }
    var sent = 0
    while sent < size {
        let count = send(pair[1], data + sent, size - sent, Int32(MSG_NOSIGNAL))
        precondition(count > 0, "send to a socketpair failed")
        sent += count
    }
    close(pair[1])

    // The socket owns the reading end from here, and closes it.
    let socket = UnixSocket(taking: FileDescriptor(rawValue: pair[0]))
    var reader = MessageReader(limit: 4096)
    var deadline = Deadline(ContinuousClock.now + .seconds(5))
    while true {
        do {
            guard (try reader.next(from: socket, until: &deadline, path: "fuzz")) != nil else {
                preconditionFailure("a closed socket timed out")
            }
        } catch {
            break  // .closed at the end of the input, or a protocol violation
        }
    }
    return 0
}

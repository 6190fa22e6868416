/// One line on the daemon's control socket (`/run/samepage/control.sock`): a request as the
/// server decodes it (`ControlCodec.decodeRequest`), and the same bytes as a response to each
/// command as the `samepage` client decodes it.
///
/// Untrusted: any local user in the socket's group may connect and send any bytes to a
/// daemon running as root; the client, in turn, reads whatever listens at the socket's path.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzControlRequest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let line = UnsafeBufferPointer(start: data, count: size)
    let (id, request) = ControlCodec.decodeRequest(line)
    if case .success(let decoded) = request {
        // What the server decoded, it can encode again: the client's own form of it.
        _ = ControlCodec.encode(decoded, id: id)
    }
    for command in ControlCommand.allCases {
        _ = try? ControlCodec.decodeResponse(line, for: command)
    }
    return 0
}

/// One line on the daemon's control socket (`/run/samepage/samepaged.sock`): a request as the
/// server decodes it (`ControlCodec.decodeRequest`), and the same bytes as a response to each
/// command as the `samepage` client decodes it. A request decoded must encode to a line that
/// decodes to the same request.
///
/// Untrusted: with a control group configured, any process in that group may connect and
/// send any bytes to a daemon running as root (docs/control-protocol.md); the client, in
/// turn, reads whatever listens at the socket's path.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzControlRequest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let line = UnsafeBufferPointer(start: data, count: size)
    let (id, request) = ControlCodec.decodeRequest(line)
    if case .success(let decoded) = request {
        // What the server decoded, the client can send: its own line decodes to the same.
        var again = ControlCodec.encode(decoded, id: id)
        again.removeLast()  // the newline
        let (sameID, same) = ControlCodec.decodeRequest(again)
        precondition(sameID == id && same == .success(decoded), "\(decoded) does not survive encoding: \(same)")
    }
    for command in ControlCommand.allCases {
        _ = try? ControlCodec.decodeResponse(line, for: command)
    }
    return 0
}

/// One message from a QEMU monitor socket, as `QMPConnection` reads it: the greeting, a reply
/// to any of the queries this client sends (`query-status`, `query-memdev`, `query-jobs`,
/// `query-migrate`, `query-pci`, `qom-list`), or an event.
///
/// Untrusted: the QEMU at the other end runs the guest, may be compromised by it, and may be
/// a process that only claims to be QEMU; the daemon (root) reads it on the thread that
/// pauses guests. Beyond not crashing, every value parsed must serialize back to text that
/// parses to the same value.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzQMPMessage(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let message = try? QMPValue(parsing: UnsafeBufferPointer(start: data, count: size)) else { return 0 }

    let again = try? QMPValue(parsing: message.serialized())
    precondition(again == message, "serialized form does not parse back: \(message)")

    _ = try? QMPGreeting(message: message)
    _ = try? QMPEvent(message: message)
    let reply = message["return"] ?? message
    _ = try? QMPRunState(reply: reply)
    _ = try? QMPMigration(reply: reply)
    _ = try? QMPPCIDevice.flattening(reply: reply)
    _ = try? replyObjects(reply, "a query-memdev backend").map(QMPMemoryBackend.init)
    _ = try? replyObjects(reply, "a query-jobs job").map(QMPJob.init)
    _ = try? replyObjects(reply, "a qom-list property").map(QMPObjectProperty.init)
    _ = try? QMPReplyReader(reply, "the query-name reply").optionalString("name")
    _ = try? QMPReplyReader(reply, "the query-uuid reply").string("UUID")
    return 0
}

/// The `/proc` files GuestMemory reads of a QEMU process: `/proc/PID/maps` (every mapping,
/// with its path), `/proc/PID/stat` (start time and size, past a command name in
/// parentheses) and `/proc/PID/cmdline` (NUL-separated arguments, then the memory backends
/// and vhost-user sockets named on them). The same bytes go to each parser.
///
/// Untrusted: the process writes its own command name (`comm`, inside `stat`'s parentheses,
/// set by `prctl(PR_SET_NAME)`), its own arguments (it may rewrite `argv` in place) and the
/// paths of the files it maps; the daemon reads them as root for every process on the host.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzProcFiles(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let text = String(decoding: bytes, as: UTF8.self)

    for mapping in MemoryMapping.parse(maps: text) {
        precondition(mapping.addresses.lowerBound <= mapping.addresses.upperBound)
        _ = (mapping.length, mapping.isSharedFileMapping, mapping.isPrivateAnonymous, mapping.isMemfd, mapping.mapFilesName)
    }

    _ = ProcessMappingIndex.startAndSize(bytes)

    let arguments = QEMUCommandLine.arguments(cmdline: bytes)
    _ = QEMUCommandLine.memoryBackends(arguments: arguments)
    _ = QEMUCommandLine.vhostUserSocketPaths(arguments: arguments)
    return 0
}

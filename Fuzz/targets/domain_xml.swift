/// A libvirt domain's XML, as `virsh dumpxml` prints it and `DomainDefinition(xml:)` reads
/// it: name, UUID, memory and its backing, devices.
///
/// Untrusted: libvirt writes it, but from a definition any user with write access to the
/// libvirt connection (a member of group `libvirt`) supplies, including names, paths and
/// metadata of their choosing; the daemon parses it as root.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDomainXML(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let xml = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    _ = try? DomainDefinition(xml: xml)
    return 0
}

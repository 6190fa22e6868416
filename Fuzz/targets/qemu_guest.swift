import Foundation
import GuestMemory

/// What QEMUGuests reads to find and trust a QEMU outside libvirt: its command line
/// (`/proc/PID/cmdline`, NUL-separated: name, UUID, monitors, memory, devices, in both the
/// legacy `key=value,…` and the JSON `-object {…}` syntaxes), its Proxmox VE VM config
/// (`/etc/pve/qemu-server/VMID.conf`) and the `Uid:` line of `/proc/PID/status`. The same
/// bytes go to each parser.
///
/// Untrusted: any local user may start a process that looks like QEMU, with any arguments;
/// a Proxmox config is written through the cluster file system by anyone with VM.Config
/// rights; the daemon parses all of them as root.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzQEMUGuest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))

    let commandLine = QEMUGuestCommandLine(arguments: QEMUCommandLine.arguments(cmdline: bytes))
    _ = (commandLine.key, commandLine.connectableMonitors, commandLine.devices.map(\.description))

    let config = ProxmoxVMConfig(text: String(decoding: bytes, as: UTF8.self))
    _ = (config.lock, config.name, config.hugepages, config.hostPCIDevices, config.virtiofsShares)

    // ProcessTrust reads the status file itself: give it one, under a /proc of our own.
    let status = procRoot + "/1/status"
    guard FileManager.default.createFile(atPath: status, contents: Data(bytes)) else { fatalError("write \(status)") }
    _ = try? ProcessTrust.facts(pid: 1, procRoot: procRoot, executable: "/usr/bin/qemu-system-x86_64")
    return 0
}

/// A scratch `/proc` holding only `1/status`.
let procRoot: String = {
    let root = NSTemporaryDirectory() + "samepage-fuzz-proc-\(getpid())"
    try! FileManager.default.createDirectory(atPath: root + "/1", withIntermediateDirectories: true)
    return root
}()

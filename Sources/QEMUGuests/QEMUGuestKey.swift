import Foundation

/// What a guest that libvirt does not manage is known by, across restarts of its QEMU: the
/// key policies and reports use for it.
///
/// libvirt gives every guest a UUID, and Samepage keys libvirt's guests by it. A QEMU started
/// by hand or by another manager has one only if its command line says so (`-uuid`, or
/// `-smbios type=1,uuid=…`, which Proxmox VE always writes from the VM's `smbios1`). The key
/// is, in this order:
///
/// 1. ``uuid(_:)``: the UUID of the command line. Stable for as long as whoever starts the
///    guest passes the same one.
/// 2. ``proxmox(vmid:)``: a Proxmox VE guest's VMID, `proxmox:VMID`. Proxmox names its
///    guests by VMID (the config file, the QMP socket, the pid file are all `VMID.*`), so it
///    is as stable as the VM.
/// 3. ``name(_:)``: the `-name`, `name:NAME`. Whoever starts two guests of one name gets
///    one key for both; Samepage does not make that better by guessing.
///
/// A guest with none of these (no UUID, not Proxmox's, no `-name`) has no key: it is found and
/// reported, but no policy can select it. The key is never taken from something that changes
/// with an unrelated detail (the QMP socket path, the pid file).
///
/// Policies select guests by name or UUID, as libvirt's. A guest whose key is not a UUID gets
/// a UUID derived from the key, stable across its restarts (the agent's
/// `QEMUGuestHandle.derivedUUID`).
public enum QEMUGuestKey: Sendable, Hashable, CustomStringConvertible {
    case uuid(UUID)
    case proxmox(vmid: Int)
    case name(String)

    /// `proxmox:101`, `name:build-runner`, or the UUID in lower case with dashes.
    public var description: String {
        switch self {
        case .uuid(let uuid): uuid.uuidString.lowercased()
        case .proxmox(let vmid): "proxmox:\(vmid)"
        case .name(let name): "name:\(name)"
        }
    }
}

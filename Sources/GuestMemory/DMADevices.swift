import Glibc
import LinuxSystem

/// The device descriptors through which hardware can DMA into guest RAM while the guest is
/// suspended: VFIO (`/dev/vfio/vfio`, group `/dev/vfio/N` or `/dev/vfio/noiommu-N`, device
/// `/dev/vfio/devices/vfioN`), iommufd (`/dev/iommu`) and vhost-vdpa (`/dev/vhost-vdpa-N`).
///
/// Suspending a guest stops its vCPUs and QEMU's emulated devices, not an assigned device or
/// a vDPA device: a QEMU, or a vhost-user backend, holding one of these can have a device
/// write a page between Samepage's zero check and its punch, and the write would be lost.
/// So a guest whose processes hold any of them must never have its RAM punched.
public enum DMADevices {
    /// The DMA-capable devices `pid` holds open, from the links of `/proc/PID/fd`: each link
    /// target once, sorted. A target keeps the kernel's ` (deleted)` suffix when the device
    /// node was removed while held open (the descriptor still works).
    ///
    /// Cheap enough to call before every reclaim pause: one readdir of the process's
    /// descriptors and one readlink per descriptor. A descriptor closed during the walk is
    /// skipped.
    ///
    /// - Throws: `SystemError` with errno `ESRCH` when the process does not exist or exits
    ///   before the walk is over (what was seen may then be incomplete), the failing call's
    ///   errno otherwise (`EACCES` without the rights to read its descriptors). A caller
    ///   deciding whether a guest may be reclaimed must take any error as doubt: not
    ///   eligible.
    public static func held(by pid: pid_t, procRoot: String = "/proc") throws(SystemError) -> [String] {
        var devices = Set<String>()
        try OpenDescriptors.forEachTarget(of: pid, procRoot: procRoot) { target in
            if isDMADevice(target) { devices.insert(String(decoding: target, as: UTF8.self)) }
        }
        return devices.sorted()
    }

    /// Whether a `/proc/PID/fd` link target names a VFIO, iommufd or vhost-vdpa device
    /// node: anything under `/dev/vfio/`, `/dev/iommu`, or `/dev/vhost-vdpa-` followed by a
    /// number, with or without the ` (deleted)` suffix of a removed node. Not other vhost
    /// devices (`/dev/vhost-net`, `/dev/vhost-vsock`: QEMU stops their rings on suspend), nor
    /// look-alike names (`/dev/vfio-foo`, `/dev/iommufoo`), nor paths outside `/dev`.
    public static func isDMADevice(linkTarget: String) -> Bool {
        var target = linkTarget
        return target.withUTF8 { isDMADevice($0) }
    }

    static func isDMADevice(_ target: UnsafeBufferPointer<UInt8>) -> Bool {
        var path = target[...]
        let deleted = " (deleted)".utf8
        if path.count > deleted.count, path.suffix(deleted.count).elementsEqual(deleted) {
            path = path.dropLast(deleted.count)
        }
        if path.starts(with: "/dev/vfio/".utf8) {
            return path.count > "/dev/vfio/".utf8.count
        }
        if path.elementsEqual("/dev/iommu".utf8) { return true }
        let vdpa = "/dev/vhost-vdpa-".utf8
        if path.starts(with: vdpa) {
            let number = path.dropFirst(vdpa.count)
            return !number.isEmpty && number.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
        }
        return false
    }
}

import Foundation
import GuestMemory

/// A device on a QEMU command line that changes what Samepage may do with the guest's RAM:
/// one through which hardware or another process reaches guest memory behind QEMU's back.
///
/// A suspended guest's vCPUs and emulated devices stand still; these do not. An assigned or
/// vDPA device, or QEMU's own userspace NVMe driver, writes guest RAM by DMA, and an ivshmem
/// region is written by whatever else maps it. Reclaim must never punch RAM such a device
/// can write between the zero check and the punch. The command line says what the guest was
/// started with; ``GuestMemory/DMADevices/held(by:procRoot:)`` says what QEMU holds open
/// now (a device hot-plugged over QMP shows only there), and is what a reclaim pause checks.
///
/// `-device nvme` is not one of these: it is QEMU's emulated NVMe controller, a device of
/// the guest like any other. QEMU's userspace NVMe *block driver* (`-blockdev driver=nvme`,
/// `-drive file=nvme://…`) drives a host NVMe controller through VFIO and has it DMA
/// straight into guest RAM.
public struct QEMUGuestDevice: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// A VFIO device assigned to the guest (`-device vfio-pci`, `vfio-pci-nohotplug`,
        /// `vfio-platform`, `vfio-ccw`, `vfio-ap`), or a block device reached through VFIO by
        /// libblkio (`-blockdev driver=virtio-blk-vfio-pci`).
        case vfio
        /// A vDPA device (`-netdev vhost-vdpa`, `-device vhost-vdpa-device-pci`, `-blockdev
        /// driver=virtio-blk-vhost-vdpa`).
        case vhostVDPA
        /// QEMU's userspace NVMe driver (`-blockdev driver=nvme`, `-drive file=nvme://…`).
        case userspaceNVMe
        /// An inter-VM shared memory device (`-device ivshmem-plain`, `ivshmem-doorbell`,
        /// the old `ivshmem`): its region is shared with other processes.
        case ivshmem
        /// Persistent memory given to the guest (`-device nvdimm`, `virtio-pmem-pci`): its
        /// backend is the guest's storage, not RAM, and is never reclaimed.
        case persistentMemory
    }

    public var kind: Kind
    /// The option it was declared with (`-device`, `-netdev`, `-blockdev`, `-drive`).
    public var option: String
    /// The device driver, netdev type or block driver (`vfio-pci`, `vhost-vdpa`, `nvme`).
    public var driver: String
    /// Its `id` (`node-name` for a block node), when it has one.
    public var id: String?

    public init(kind: Kind, option: String, driver: String, id: String? = nil) {
        self.kind = kind
        self.option = option
        self.driver = driver
        self.id = id
    }

    public var description: String { "\(option) \(driver)" + (id.map { " (\($0))" } ?? "") }

    /// The devices of interest among `-device`, `-netdev`, `-blockdev` and `-drive` values, in
    /// either syntax (JSON or QemuOpts).
    static func devices(in options: QEMUOptions) -> [QEMUGuestDevice] {
        var devices: [QEMUGuestDevice] = []
        for (option, value) in options.pairs {
            switch option {
            case "-device":
                let properties = Self.properties(value)
                guard let driver = properties["driver"] ?? properties[""], let kind = Self.kind(ofDevice: driver) else { continue }
                devices.append(QEMUGuestDevice(kind: kind, option: option, driver: driver, id: properties["id"]))
            case "-netdev":
                let properties = Self.properties(value)
                guard let type = properties["type"] ?? properties[""], type == "vhost-vdpa" else { continue }
                devices.append(QEMUGuestDevice(kind: .vhostVDPA, option: option, driver: type, id: properties["id"]))
            case "-blockdev", "-drive":
                let properties = Self.properties(value)
                let id = properties["node-name"] ?? properties["id"]
                for driver in Self.blockDrivers(value) {
                    guard let kind = Self.kind(ofBlockDriver: driver) else { continue }
                    devices.append(QEMUGuestDevice(kind: kind, option: option, driver: driver, id: id))
                }
            default:
                continue
            }
        }
        return devices
    }

    static func properties(_ value: String) -> [String: String] {
        value.hasPrefix("{") ? QEMUCommandLine.flatJSONProperties(value) : QEMUCommandLine.optsProperties(value)
    }

    /// The kind of a device driver (a QOM type) of interest, or nil.
    public static func kind(ofDevice driver: String) -> Kind? {
        if driver.hasPrefix("vfio-") { return .vfio }
        if driver.hasPrefix("vhost-vdpa-device") { return .vhostVDPA }
        if driver.hasPrefix("ivshmem") { return .ivshmem }
        if driver == "nvdimm" || driver.hasPrefix("virtio-pmem") { return .persistentMemory }
        return nil
    }

    static func kind(ofBlockDriver driver: String) -> Kind? {
        switch driver {
        case "nvme": .userspaceNVMe
        case "virtio-blk-vhost-vdpa": .vhostVDPA
        case "virtio-blk-vfio-pci": .vfio
        default: nil
        }
    }

    /// Every block driver a `-blockdev` or `-drive` names, at any depth: a protocol node can
    /// sit under a format node (`driver=qcow2,file.driver=nvme`, or JSON's nested `"file":
    /// {"driver":"nvme",…}`), and `-drive file=nvme://…` names the driver by its URL.
    static func blockDrivers(_ value: String) -> [String] {
        if value.hasPrefix("{") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(value.utf8)) else { return [] }
            var drivers: [String] = []
            func collect(_ node: Any) {
                guard let node = node as? [String: Any] else { return }
                if let driver = node["driver"] as? String { drivers.append(driver) }
                for (_, member) in node.sorted(by: { $0.key < $1.key }) { collect(member) }
            }
            collect(object)
            return drivers
        }
        let properties = QEMUCommandLine.optsProperties(value)
        var drivers = properties.filter { $0.key == "driver" || $0.key.hasSuffix(".driver") }.sorted { $0.key < $1.key }.map(\.value)
        if let file = properties["file"], file.hasPrefix("nvme://"), !drivers.contains("nvme") { drivers.append("nvme") }
        return drivers
    }
}

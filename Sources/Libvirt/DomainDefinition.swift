import Foundation

/// What Samepage needs from a domain's XML: its RAM layout and how it is backed, and the
/// devices that decide whether a guest can be mapped, compared and reclaimed safely.
public struct DomainDefinition: Sendable, Hashable {
    public var name: String
    public var uuid: UUID
    /// The hypervisor type: `kvm` or `qemu` (TCG).
    public var type: String
    /// The maximum memory, including memory devices (`<memory>`), in KiB.
    public var memoryKiB: UInt64
    /// The memory the balloon leaves the guest (`<currentMemory>`), in KiB.
    public var currentMemoryKiB: UInt64?
    public var memoryBacking: MemoryBacking
    /// The guest NUMA cells (`<cpu><numa><cell>`); each has its own RAM backend.
    public var numaCells: [NUMACell]
    /// DIMMs, NVDIMMs, virtio-mem and virtio-pmem devices, each with its own backend.
    public var memoryDevices: [MemoryDevice]
    /// Assigned host devices (VFIO), including `<interface type='hostdev'>`.
    public var hostDevices: [HostDevice]
    /// vDPA network interfaces (`<interface type='vdpa'>`): the device DMAs into guest RAM.
    public var vdpaInterfaces: [VDPAInterface]
    /// NVMe disks driven by QEMU's userspace driver (`<disk type='nvme'>`): QEMU maps guest
    /// RAM for the controller through VFIO, and the controller DMAs into it.
    public var nvmeDisks: [NVMeDisk]
    /// vhost-vdpa block devices (`<disk type='vhostvdpa'>`): the device DMAs into guest RAM.
    public var vdpaDisks: [VDPADisk]
    /// Arguments of `<qemu:commandline>` that may add or change devices, objects or memory
    /// behind libvirt's back, each option with its value as one string
    /// (`-device vfio-pci,host=0000:01:00.0`). Every argument counts except the few options
    /// known to leave them alone (`-msg`, `-trace`, `-d`, `-D`, `-dfilter`, `-name`,
    /// `-sandbox`); `-set` and `-global` count, as they change existing devices.
    public var commandLineDevices: [String]
    /// Aliases of the devices whose properties `<qemu:override>` changes
    /// (`<qemu:device alias=…>`): as `-set`, a change to a device libvirt describes.
    public var deviceOverrides: [String]
    /// Devices served by a vhost-user backend process that maps guest RAM.
    public var vhostUserDevices: [VhostUserDevice]
    /// Shared-memory devices (`<shmem>`, ivshmem).
    public var sharedMemoryDevices: [SharedMemoryDevice]
    /// `<filesystem>` devices with the virtiofs driver (served by virtiofsd, a vhost-user backend).
    public var virtiofsFilesystems: [VirtiofsFilesystem]
    /// The launch security type (`sev`, `sev-snp`, `tdx`, `s390-pv`), nil without one.
    public var launchSecurity: String?
    /// The memory balloon (`<memballoon>`); nil without one or with `model='none'`.
    public var memoryBalloon: MemoryBalloon?

    /// The guest's RAM regions as QEMU backs them: one per NUMA cell (or one for all main
    /// memory without cells), plus one per memory device.
    public var ramRegions: [RAMRegion] {
        var regions: [RAMRegion] = []
        if numaCells.isEmpty {
            let devices = memoryDevices.reduce(0) { $0 + $1.sizeKiB }
            regions.append(RAMRegion(backendID: nil, sizeKiB: memoryKiB - min(devices, memoryKiB), source: .main))
        } else {
            for cell in numaCells {
                regions.append(RAMRegion(backendID: "ram-node\(cell.id)", sizeKiB: cell.memoryKiB, source: .numaCell(cell.id)))
            }
        }
        for device in memoryDevices {
            regions.append(RAMRegion(backendID: device.alias.map { "mem\($0)" }, sizeKiB: device.sizeKiB,
                                     source: .memoryDevice(device.model, alias: device.alias)))
        }
        return regions
    }
}

/// One RAM backend a guest should have, derived from its XML.
public struct RAMRegion: Sendable, Hashable {
    /// The id libvirt gives the QEMU memory-backend object, when it is predictable
    /// (`ram-node0`, `memdimm0`); nil for main memory, whose id depends on the machine type.
    public var backendID: String?
    public var sizeKiB: UInt64
    public var source: Source

    public enum Source: Sendable, Hashable {
        case main
        case numaCell(UInt32)
        case memoryDevice(MemoryDevice.Model, alias: String?)
    }
}

/// `<memoryBacking>`.
public struct MemoryBacking: Sendable, Hashable {
    public enum Source: String, Sendable, Hashable { case anonymous, file, memfd }
    public enum Access: String, Sendable, Hashable { case shared, `private` }

    /// `<source type=…>`; nil means QEMU's default, anonymous memory.
    public var source: Source?
    /// `<access mode=…>`; nil means private (only a shared backend can be mapped by Samepage).
    public var access: Access?
    /// `<hugepages>` present.
    public var hugepages: Bool
    /// Explicit `<hugepages><page>` sizes in KiB, with their nodesets; empty means the
    /// host's default huge page size.
    public var hugepageSizes: [HugePageSize]
    /// `<locked/>`: guest memory is mlocked.
    public var locked: Bool
    /// `<allocation mode='immediate'/>`: all guest memory is allocated at start.
    public var preallocated: Bool
    /// `<discard/>`: QEMU discards guest memory when the guest frees it.
    public var discard: Bool
    /// `<nosharepages/>`: the owner asked for no page sharing (KSM) for this guest.
    public var noSharePages: Bool

    public struct HugePageSize: Sendable, Hashable {
        public var sizeKiB: UInt64
        public var nodeset: String?
    }

    public init(source: Source? = nil, access: Access? = nil, hugepages: Bool = false,
                hugepageSizes: [HugePageSize] = [], locked: Bool = false, preallocated: Bool = false,
                discard: Bool = false, noSharePages: Bool = false) {
        self.source = source
        self.access = access
        self.hugepages = hugepages
        self.hugepageSizes = hugepageSizes
        self.locked = locked
        self.preallocated = preallocated
        self.discard = discard
        self.noSharePages = noSharePages
    }
}

public struct NUMACell: Sendable, Hashable {
    public var id: UInt32
    public var memoryKiB: UInt64
    /// `memAccess`, overriding the domain-wide `<access>` for this cell.
    public var access: MemoryBacking.Access?
}

/// `<memory model=…>` under `<devices>`.
public struct MemoryDevice: Sendable, Hashable {
    public enum Model: String, Sendable, Hashable {
        case dimm, nvdimm, virtioMem = "virtio-mem", virtioPmem = "virtio-pmem", sgxEPC = "sgx-epc"
    }
    public var model: Model
    public var alias: String?
    /// The device's (maximum) size, in KiB.
    public var sizeKiB: UInt64
    /// The guest NUMA node it belongs to.
    public var node: UInt32?
    public var access: MemoryBacking.Access?
    /// A backing file (nvdimm, virtio-pmem).
    public var sourcePath: String?
    /// Huge page size of the backend, in KiB.
    public var pageSizeKiB: UInt64?
    /// virtio-mem: memory the guest was asked to plug, and has plugged, in KiB.
    public var requestedKiB: UInt64?
    public var currentKiB: UInt64?
}

/// `<hostdev>`, or `<interface type='hostdev'>`: a host device assigned through VFIO.
public struct HostDevice: Sendable, Hashable {
    /// `pci`, `usb`, `scsi`, `mdev`, ... (`interface` for `<interface type='hostdev'>`).
    public var type: String
    public var alias: String?
}

public struct VDPAInterface: Sendable, Hashable {
    public var alias: String?
    /// `/dev/vhost-vdpa-N`.
    public var devicePath: String?
}

/// `<disk type='nvme'>`.
public struct NVMeDisk: Sendable, Hashable {
    public var alias: String?
    /// The controller's PCI address, `0000:01:00.0`.
    public var pciAddress: String?
    /// The NVMe namespace.
    public var namespace: UInt32?
}

/// `<disk type='vhostvdpa'>`.
public struct VDPADisk: Sendable, Hashable {
    public var alias: String?
    /// `/dev/vhost-vdpa-N`.
    public var devicePath: String?
}

public struct VhostUserDevice: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable { case interface, disk }
    public var kind: Kind
    public var alias: String?
    /// The UNIX socket the backend serves or connects to.
    public var socketPath: String?
    /// `server` or `client`, from QEMU's point of view.
    public var mode: String?
}

public struct SharedMemoryDevice: Sendable, Hashable {
    public var name: String
    /// `ivshmem-plain` or `ivshmem-doorbell`.
    public var model: String?
    public var sizeKiB: UInt64?
    public var alias: String?
}

public struct VirtiofsFilesystem: Sendable, Hashable {
    public var alias: String?
    /// The mount tag the guest sees.
    public var target: String?
    /// The shared host directory (libvirt-launched virtiofsd).
    public var sourceDirectory: String?
    /// The socket of an externally launched virtiofsd.
    public var socketPath: String?
}

/// `<memballoon model='virtio' freePageReporting='on'>`: the balloon device, and whether the
/// guest reports the pages it frees (QEMU's `free-page-reporting=on`).
public struct MemoryBalloon: Sendable, Hashable {
    /// `virtio`, `virtio-transitional`, `virtio-non-transitional`, `xen`.
    public var model: String
    /// `freePageReporting='on'`.
    public var freePageReporting: Bool

    /// A balloon of the values given.
    public init(model: String, freePageReporting: Bool) {
        self.model = model
        self.freePageReporting = freePageReporting
    }
}

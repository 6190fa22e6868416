/// The facts about a guest that decide what may be done with its memory.
///
/// Learned from the guest's libvirt definition (in SamepageAgent, which reads it), from the
/// processes that map its RAM and from libvirt's job state. The defaults are a guest about
/// which nothing is known yet: anonymous memory, no devices, no other mappers.
public struct GuestFacts: Sendable, Equatable {
    /// `memoryBacking` source: memfd, file, anonymous.
    public var backing: String = "anonymous"
    /// shared or private.
    @ExplicitNull public var access: String? = nil
    public var hugepages = false
    public var hugepageSizesKiB: [UInt64] = []
    /// Memory allocated up front (`<allocation mode='immediate'/>`).
    public var preallocated = false
    /// `<locked/>`: pinned memory.
    public var locked = false
    /// Devices that keep writing while the guest is suspended, from the XML: VFIO/hostdev,
    /// vDPA interfaces, NVMe and vhost-vdpa disks, and devices added outside libvirt's model
    /// (`<qemu:commandline>` arguments, `<qemu:override>` of a device).
    public var assignedDevices: [String] = []
    /// ivshmem shared memory devices.
    public var ivshmem: [String] = []
    /// nvdimm and virtio-pmem devices.
    public var persistentMemory: [String] = []
    /// SEV/TDX launch security.
    @ExplicitNull public var launchSecurity: String? = nil
    /// vhost-user devices (their sockets), virtiofs included.
    public var vhostUser: [String] = []
    /// The guest's vhost-user backends that map its RAM (each connected to its QEMU on one of
    /// the guest's vhost-user sockets): these may map it, reclaim still allowed.
    public var vhostUserBackends: [MapperProcess] = []
    /// Other processes that map a RAM backend: these keep reclaim off.
    public var otherMappers: [MapperProcess] = []
    /// A migration, snapshot or dump is running.
    public var activeJob = false
    /// Devices that DMA into guest RAM, seen from the processes: VFIO, iommufd or vhost-vdpa
    /// descriptors held by QEMU or one of its vhost-user backends (`/dev/vfio/7 (qemu 1234)`).
    public var dmaDescriptors: [String] = []
    /// The XML could not be read again at the last reconcile: what the guest has now is not
    /// known, so nothing is reclaimed until it is.
    public var definitionUnknown = false
    /// A guest outside libvirt that cannot be paused over QMP, and why: no QMP server socket
    /// (a monitor passed in as a descriptor, as Kata's shim does; a client-mode monitor), or
    /// one samepaged could not talk to. Accounted only.
    @ExplicitNull public var qmpUnreachable: String? = nil
    /// A Proxmox VE guest's `lock:` (backup, migrate, snapshot, suspending, ...): an operation
    /// of Proxmox's is under way, and nothing pauses the guest meanwhile.
    @ExplicitNull public var proxmoxLock: String? = nil
    /// Its memory balloon (libvirt's `<memballoon>`, QEMU's `virtio-balloon` device); nil
    /// without one (libvirt's `model='none'`) or when not known.
    @ExplicitNull public var balloon: Balloon? = nil

    /// Nothing known yet.
    public init() {}
}

/// The facts' wire form (a guest's `"facts"`): every key (the synthesized encoding), null for
/// what is not known. Missing keys keep their defaults: facts grow over time.
extension GuestFacts: Codable {
    public enum CodingKeys: String, CodingKey {
        case backing, access, hugepages, preallocated, locked, ivshmem
        case hugepageSizesKiB = "hugepage_sizes_kib"
        case assignedDevices = "assigned_devices"
        case persistentMemory = "persistent_memory"
        case launchSecurity = "launch_security"
        case vhostUser = "vhost_user"
        case vhostUserBackends = "vhost_user_backends"
        case otherMappers = "other_mappers"
        case activeJob = "active_job"
        case dmaDescriptors = "dma_descriptors"
        case definitionUnknown = "definition_unknown"
        case qmpUnreachable = "qmp_unreachable"
        case proxmoxLock = "proxmox_lock"
        case balloon
    }

    public init(from decoder: any Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        backing = try c.decode(.backing, or: backing)
        access = try c.decodeIfPresent(String.self, forKey: .access)
        hugepages = try c.decode(.hugepages, or: hugepages)
        hugepageSizesKiB = try c.decode(.hugepageSizesKiB, or: hugepageSizesKiB)
        preallocated = try c.decode(.preallocated, or: preallocated)
        locked = try c.decode(.locked, or: locked)
        assignedDevices = try c.decode(.assignedDevices, or: assignedDevices)
        ivshmem = try c.decode(.ivshmem, or: ivshmem)
        persistentMemory = try c.decode(.persistentMemory, or: persistentMemory)
        launchSecurity = try c.decodeIfPresent(String.self, forKey: .launchSecurity)
        vhostUser = try c.decode(.vhostUser, or: vhostUser)
        vhostUserBackends = try c.decode(.vhostUserBackends, or: vhostUserBackends)
        otherMappers = try c.decode(.otherMappers, or: otherMappers)
        activeJob = try c.decode(.activeJob, or: activeJob)
        dmaDescriptors = try c.decode(.dmaDescriptors, or: dmaDescriptors)
        definitionUnknown = try c.decode(.definitionUnknown, or: definitionUnknown)
        qmpUnreachable = try c.decodeIfPresent(String.self, forKey: .qmpUnreachable)
        proxmoxLock = try c.decodeIfPresent(String.self, forKey: .proxmoxLock)
        balloon = try c.decodeIfPresent(Balloon.self, forKey: .balloon)
    }
}

/// A guest's balloon device and whether it reports free pages: with free page reporting
/// (libvirt's `<memballoon model='virtio' freePageReporting='on'>`, QEMU's
/// `virtio-balloon-pci,free-page-reporting=on`), the guest's own driver hands pages it freed
/// back to the host, which QEMU discards: memory given back without samepaged.
///
/// On the wire: `{"model": "virtio", "free_page_reporting": true}`.
public struct Balloon: Sendable, Equatable, Codable {
    /// libvirt's model (`virtio`, `virtio-transitional`, ...) or QEMU's device driver.
    public var model: String
    /// Whether free page reporting is on.
    public var freePageReporting: Bool

    /// A balloon of the values given.
    public init(model: String, freePageReporting: Bool) {
        self.model = model
        self.freePageReporting = freePageReporting
    }

    public enum CodingKeys: String, CodingKey {
        case model
        case freePageReporting = "free_page_reporting"
    }
}

/// A process other than the guest's QEMU that maps one of its RAM backends.
///
/// On the wire: `{"pid": 4242, "command": "virtiofsd"}`, with `"socket"` only when there is
/// one (its synthesized `Codable` form).
public struct MapperProcess: Sendable, Equatable, Codable {
    public var pid: Int32
    /// Its command name (`/proc/PID/comm`), or "?".
    public var command: String
    /// For a vhost-user backend: the socket path it serves the guest on.
    public var socket: String?

    public init(pid: Int32, command: String, socket: String? = nil) {
        self.pid = pid
        self.command = command
        self.socket = socket
    }
}

import Libvirt
import SamepageModel

/// Facts read from a guest's libvirt definition (its XML); the model knows nothing of libvirt.
extension GuestFacts {
    /// The facts of a new definition, with what was learned from the processes and libvirt's
    /// job state kept from `previous`.
    init(_ definition: DomainDefinition, keepingProcessFactsOf previous: GuestFacts) {
        self.init(definition)
        activeJob = previous.activeJob
        vhostUserBackends = previous.vhostUserBackends
        otherMappers = previous.otherMappers
        dmaDescriptors = previous.dmaDescriptors
    }

    /// The facts of a definition; what only the processes tell is left unknown.
    init(_ definition: DomainDefinition) {
        self.init()
        let memory = definition.memoryBacking
        if let source = memory.source { backing = source.rawValue }
        access = memory.access?.rawValue
        hugepages = memory.hugepages
        hugepageSizesKiB = memory.hugepageSizes.map(\.sizeKiB)
        preallocated = memory.preallocated
        locked = memory.locked
        assignedDevices = definition.hostDevices.map { "hostdev \($0.type)\($0.alias.map { " \($0)" } ?? "")" }
            + definition.vdpaInterfaces.map { "vdpa \($0.devicePath ?? $0.alias ?? "?")" }
            + definition.nvmeDisks.map { "nvme disk \($0.pciAddress ?? $0.alias ?? "?")" }
            + definition.vdpaDisks.map { "vhost-vdpa disk \($0.devicePath ?? $0.alias ?? "?")" }
            + definition.commandLineDevices.map { "qemu:commandline \($0)" }
            + definition.deviceOverrides.map { "qemu:override of device \($0)" }
        ivshmem = definition.sharedMemoryDevices.map(\.name)
        persistentMemory = definition.memoryDevices
            .filter { $0.model == .nvdimm || $0.model == .virtioPmem }
            .map { "\($0.model.rawValue)\($0.alias.map { " \($0)" } ?? "")" }
        launchSecurity = definition.launchSecurity
        vhostUser = definition.vhostUserDevices.map { "\($0.kind.rawValue) \($0.socketPath ?? $0.alias ?? "?")" }
            + definition.virtiofsFilesystems.map { "virtiofs \($0.socketPath ?? $0.target ?? "?")" }
        balloon = definition.memoryBalloon.map { Balloon(model: $0.model, freePageReporting: $0.freePageReporting) }
    }
}

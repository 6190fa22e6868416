import Glibc
import Foundation
import GuestMemory
import Libvirt
import LinuxSystem
import QEMUGuests
import QMP
import SamepageCore
import SamepageModel

/// Guests libvirt does not manage: QEMU processes found in /proc (Proxmox VE's qemu-server,
/// hand-written units, anything else), named from their command lines and followed beside
/// libvirt's, whether libvirtd runs or not.
///
/// Everything about such a guest comes from its process (command line, maps, descriptors)
/// and, briefly, from its QMP server socket: QEMU serves one QMP client at a time, and
/// Proxmox's `qm` connects for every command, so samepaged connects, asks and disconnects,
/// at attach and for each pause, never holding the monitor between.
extension Worker {
    /// Makes the tracked guests outside libvirt match the QEMU processes running now. At
    /// every reconcile interval.
    func reconcileQEMUGuests() {
        guard let discovery = qemuDiscovery else { return }
        nextQEMUReconcile = ContinuousClock.now + configuration.reconcileInterval
        var seen = Set<UUID>()
        for found in discovery.refresh() where found.managedByLibvirt == nil {
            guard let handle = QEMUGuestHandle(found) else { continue }
            guard seen.insert(handle.uuid).inserted else {
                if unnamedQEMUWarned.insert(found.pid).inserted {
                    logger.warning("QEMU \(found.pid) (\(handle.name)) has the identity of another QEMU outside libvirt (\(handle.uuid)); give each guest its own -uuid or -name; it is not followed")
                }
                continue
            }
            if let guest = guests[handle.uuid] {
                // A libvirt guest with that UUID is libvirt's: never two owners.
                guard guest.source != .libvirt else { continue }
                if guest.qemu?.pid != handle.pid || guest.qemu?.startTime != handle.startTime {
                    guests[handle.uuid] = nil
                    detach(guest, reason: "its QEMU restarted")
                    attachQEMU(handle)
                } else {
                    refreshProxmoxLock(guest)
                    // A guest last seen paused or busy with a job is asked again (a pause
                    // attempt only asks guests that look pausable).
                    if guest.state != .running || guest.facts.activeJob { refreshRunState(guest) }
                }
            } else {
                attachQEMU(handle)
            }
        }
        // Processes named like a QEMU that the kernel's facts do not make a hypervisor: said
        // once each, never contacted, listed or read.
        for (pid, why) in discovery.untrusted where untrustedQEMUWarned.insert(pid).inserted {
            logger.warning("process \(pid) looks like a QEMU but is ignored: \(why)")
        }
        untrustedQEMUWarned.formIntersection(discovery.untrusted.keys)
        for (uuid, guest) in guests where guest.source != .libvirt && !seen.contains(uuid) {
            guests[uuid] = nil
            detach(guest, reason: "its QEMU exited")
        }
        checkMapped(guests.values.filter { $0.mapped && $0.source != .libvirt })
        if kernelGovernor != nil, guests.values.contains(where: { $0.source != .libvirt }) { reconcileKernelKSM(connection: connection) }
    }

    /// Starts following a guest outside libvirt: its facts from the command line and one QMP
    /// exchange (run state, memory backends, hot-plugged devices), then its RAM mapped as
    /// its policy asks.
    func attachQEMU(_ handle: QEMUGuestHandle) {
        let guest = TrackedGuest(handle)
        guests[handle.uuid] = guest
        guest.policy = configuration.policy(guest.identity)
        guest.facts = handle.commandLineFacts
        refreshProxmoxLock(guest)
        askQEMU(guest)
        logger.info("found \(guest.source) guest \(guest.identity.name) (\(guest.identity.uuid)\(handle.uuidDerived ? ", derived" : "")): QEMU \(handle.pid)\(handle.vmid.map { ", VMID \($0)" } ?? ""), QMP \(handle.qmpSocket ?? "none: \(handle.unreachable ?? "")")")
        if guest.policy.mode == .off {
            guest.reason = "policy mode is off"
        } else {
            map(guest)
        }
        if let reason = guest.reason { logger.info("guest \(guest.identity.name) not mapped: \(reason)") }
    }

    /// One QMP exchange at attach: the run state, the memory backends (the regions expected,
    /// and whether any was preallocated), devices hot-plugged since start that reach guest
    /// RAM, and running jobs. A monitor that is busy or does not answer leaves the command
    /// line's facts; the pause asks again.
    func askQEMU(_ guest: TrackedGuest) {
        guard let socket = guest.qemu?.qmpSocket else { return }
        let timeout = Duration.milliseconds(configuration.qemuGuests.qmpTimeoutMs)
        do {
            var qmp = try QMPConnection.connect(path: socket, timeout: timeout)
            if let handle = guest.qemu, let mismatch = try QMPPauseTransport.identityMismatch(&qmp, handle: handle, timeout: timeout) {
                logger.error("guest \(guest.identity.name): \(mismatch); it is accounted, never paused")
                guest.facts.qmpUnreachable = mismatch
                return
            }
            let status = try qmp.queryStatus(timeout: timeout)
            guest.state = Self.domainState(status)
            let backends = try qmp.queryMemdev(timeout: timeout)
            guest.qemu?.expected = backends.compactMap { backend in
                backend.id.map { ExpectedRegion(backendID: $0, size: Int(backend.size)) }
            }
            if backends.contains(where: \.prealloc) { guest.facts.preallocated = true }
            for device in try Self.peripheralsReachingRAM(&qmp, timeout: timeout) {
                let named = "\(device.type) (\(device.path))"
                if device.kind == .ivshmem {
                    if !guest.facts.ivshmem.contains(named) { guest.facts.ivshmem.append(named) }
                } else if !guest.facts.assignedDevices.contains(named) {
                    guest.facts.assignedDevices.append(named)
                }
            }
            for node in try Self.userspaceNVMeNodes(&qmp, timeout: timeout) {
                let named = "userspace NVMe block node \(node)"
                if !guest.facts.assignedDevices.contains(named) { guest.facts.assignedDevices.append(named) }
            }
            guest.facts.activeJob = try QMPPauseTransport.hasActiveJob(&qmp, timeout: timeout)
        } catch {
            logger.info("guest \(guest.identity.name): QMP at \(socket): \(error); its command line's facts stand until its next pause asks again")
        }
    }

    /// Asks a guest's QMP for its run state and jobs again; a busy or silent monitor leaves
    /// them as they were.
    func refreshRunState(_ guest: TrackedGuest) {
        guard let socket = guest.qemu?.qmpSocket else { return }
        let timeout = Duration.milliseconds(configuration.qemuGuests.qmpTimeoutMs)
        do {
            var qmp = try QMPConnection.connect(path: socket, timeout: timeout)
            guest.state = Self.domainState(try qmp.queryStatus(timeout: timeout))
            guest.facts.activeJob = try QMPPauseTransport.hasActiveJob(&qmp, timeout: timeout)
        } catch {
            logger.debug("guest \(guest.identity.name): QMP at \(socket): \(error)")
        }
    }

    /// The devices of the QOM tree that reach guest RAM behind QEMU's back (VFIO, vhost-vdpa,
    /// ivshmem), hot-plugged ones included: `qom-list` of `/machine/peripheral` (devices with
    /// an id) and `/machine/peripheral-anon`.
    static func peripheralsReachingRAM(
        _ qmp: inout QMPConnection, timeout: Duration
    ) throws(QMPError) -> [(path: String, type: String, kind: QEMUGuestDevice.Kind)] {
        var found: [(path: String, type: String, kind: QEMUGuestDevice.Kind)] = []
        for parent in ["/machine/peripheral", "/machine/peripheral-anon"] {
            for property in try qmp.qomList(path: parent, timeout: timeout) {
                guard let type = property.childType, let kind = QEMUGuestDevice.kind(ofDevice: type) else { continue }
                found.append(("\(parent)/\(property.name)", type, kind))
            }
        }
        return found
    }

    /// The block nodes of QEMU's own userspace NVMe driver (`driver=nvme`, which maps guest
    /// RAM for the device's DMA through VFIO), hot-plugged ones included
    /// (`query-named-block-nodes`).
    static func userspaceNVMeNodes(_ qmp: inout QMPConnection, timeout: Duration) throws(QMPError) -> [String] {
        guard case .array(let nodes) = try qmp.execute("query-named-block-nodes", arguments: ["flat": .bool(true)], timeout: timeout)
        else { return [] }
        return nodes.compactMap { node in
            guard case .object(let fields) = node, case .string("nvme")? = fields["drv"] else { return nil }
            if case .string(let name)? = fields["node-name"] { return name }
            return "(unnamed)"
        }
    }

    /// QEMU's run state in libvirt's words, as `list` shows every guest's.
    static func domainState(_ status: QMPRunState) -> DomainState {
        switch status.status {
        case .running: .running
        case .shutdown: .shutoff
        case .guestPanicked, .internalError: .crashed
        case .suspended: .pmSuspended
        default: status.running ? .running : .paused
        }
    }

    /// Reads a Proxmox VE guest's `lock:` (its `VMID.conf`); a config that cannot be read
    /// counts as locked: what Proxmox is doing with the guest is not known.
    func refreshProxmoxLock(_ guest: TrackedGuest) {
        guard guest.source == .proxmox, let vmid = guest.qemu?.vmid else { return }
        do {
            let config = try ProxmoxVMConfig.read(vmid: vmid, directory: configuration.qemuGuests.proxmoxConfigDirectory)
            guest.facts.proxmoxLock = config.lock
        } catch {
            guest.facts.proxmoxLock = "its config \(configuration.qemuGuests.proxmoxConfigDirectory)/\(vmid).conf cannot be read (\(error))"
        }
    }

    /// The QEMU of a guest outside libvirt, held by a pidfd and checked to be the process
    /// found (same start time after the pidfd was opened).
    static func openQEMU(_ handle: QEMUGuestHandle) throws(UnmappableReason) -> QEMUProcess {
        let process: QEMUProcess
        do { process = try QEMUProcess(pid: handle.pid) } catch {
            throw error.errno == .noSuchProcess ? .processGone : UnmappableReason(error)
        }
        guard (try? QEMUGuestHandle.startTime(of: handle.pid)) == handle.startTime else { throw .processGone }
        return process
    }
}

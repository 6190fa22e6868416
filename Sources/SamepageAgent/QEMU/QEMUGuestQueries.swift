import Glibc
import Foundation
import GuestMemory
import LinuxSystem
import Logging
import QEMUGuests
import QMP
import SamepageModel

/// What samepaged asks a guest outside libvirt, besides its pauses: its run state, memory
/// backends and devices over its QMP socket, its Proxmox VE lock, and its QEMU process.
///
/// QEMU serves one QMP client at a time and Proxmox's `qm` connects for every command, so
/// each ask connects, asks and disconnects, never holding the monitor. Every ask goes
/// through ``ask(_:_:)``, which checks first that the socket answers for this guest (a
/// socket path can outlive its QEMU and be taken by another), as the pause does. Its own room:
/// it holds nothing but the QMP timeout and where Proxmox's configs are.
struct QEMUGuestQueries {
    let logger: Logger
    /// How long each QMP exchange may take.
    let timeout: Duration
    /// Where Proxmox VE keeps `VMID.conf`.
    let proxmoxConfigDirectory: String

    init(configuration: AgentConfiguration, logger: Logger) {
        self.logger = logger
        timeout = .milliseconds(configuration.qemuGuests.qmpTimeoutMs)
        proxmoxConfigDirectory = configuration.qemuGuests.proxmoxConfigDirectory
    }

    /// Why an ask did not get an answer.
    enum AskError: Error, CustomStringConvertible {
        /// The guest has no QMP socket samepaged can connect to.
        case noSocket
        /// The socket answers for another guest: the guest is marked unreachable.
        case wrongPeer(String)
        case qmp(QMPError)

        var description: String {
            switch self {
            case .noSocket: "no QMP socket"
            case .wrongPeer(let why): why
            case .qmp(let error): "\(error)"
            }
        }
    }

    /// The one connect-and-ask over a guest's QMP socket: connects (only to a socket that is
    /// its QEMU's: ``TrustedQMP``), checks that the socket
    /// answers for this guest (``QMPPauseTransport/identityMismatch(_:handle:timeout:)``),
    /// runs `body`, disconnects. A socket that answers for another guest is never asked
    /// anything: the guest is marked unreachable (it is accounted, never paused), logged
    /// once.
    func ask<Value>(_ guest: TrackedGuest, _ body: (inout QMPConnection) throws(QMPError) -> Value) throws(AskError) -> Value {
        guard let handle = guest.qemu, let socket = handle.qmpSocket else { throw .noSocket }
        var mismatch: String?
        do {
            var qmp = try TrustedQMP.connect(handle, socket: socket, timeout: timeout)
            mismatch = try QMPPauseTransport.identityMismatch(&qmp, handle: handle, timeout: timeout)
            if mismatch == nil { return try body(&qmp) }
        } catch {
            // A socket that is not its QEMU's is never asked anything: as a wrong peer.
            guard case .untrustedPeer(_, let why) = error else { throw .qmp(error) }
            mismatch = why
        }
        if let mismatch {
            if guest.facts.qmpUnreachable != mismatch {
                logger.error("guest \(guest.identity.name): \(mismatch); it is accounted, never paused")
            }
            guest.facts.qmpUnreachable = mismatch
            throw .wrongPeer(mismatch)
        }
        throw .noSocket
    }

    /// One QMP exchange at attach: the run state, the memory backends (the regions expected,
    /// and whether any was preallocated), devices hot-plugged since start that reach guest
    /// RAM, and running jobs. A monitor that is busy or does not answer leaves the command
    /// line's facts; the pause asks again.
    func askAtAttach(_ guest: TrackedGuest) {
        let timeout = self.timeout
        do {
            try ask(guest) { qmp throws(QMPError) in
                guest.state = GuestRunState(try qmp.queryStatus(timeout: timeout))
                let backends = try qmp.queryMemdev(timeout: timeout)
                guest.qemu?.expected = backends.compactMap { backend in
                    backend.id.map { ExpectedRegion(backendID: $0, size: Int(backend.size)) }
                }
                if backends.contains(where: \.prealloc) { guest.facts.preallocated = true }
                for device in try Self.peripheralsReachingRAM(&qmp, timeout: timeout) {
                    let named = "\(device.type) (\(device.path))"
                    if device.kind == .ivshmem {
                        if !guest.facts.ivshmem.contains(named) { guest.facts.ivshmem.append(named) }
                    } else if device.kind == .persistentMemory {
                        if !guest.facts.persistentMemory.contains(named) { guest.facts.persistentMemory.append(named) }
                    } else if !guest.facts.assignedDevices.contains(named) {
                        guest.facts.assignedDevices.append(named)
                    }
                }
                for node in try Self.userspaceNVMeNodes(&qmp, timeout: timeout) {
                    let named = "userspace NVMe block node \(node)"
                    if !guest.facts.assignedDevices.contains(named) { guest.facts.assignedDevices.append(named) }
                }
                guest.facts.activeJob = try QMPPauseTransport.hasActiveJob(&qmp, timeout: timeout)
            }
        } catch {
            guard case .qmp = error, let socket = guest.qemu?.qmpSocket else { return }
            logger.info("guest \(guest.identity.name): QMP at \(socket): \(error); its command line's facts stand until its next pause asks again")
        }
    }

    /// Asks a guest's QMP for its run state and jobs again; a busy or silent monitor leaves
    /// them as they were.
    func refreshRunState(_ guest: TrackedGuest) {
        let timeout = self.timeout
        do {
            try ask(guest) { qmp throws(QMPError) in
                guest.state = GuestRunState(try qmp.queryStatus(timeout: timeout))
                guest.facts.activeJob = try QMPPauseTransport.hasActiveJob(&qmp, timeout: timeout)
            }
        } catch {
            guard case .qmp = error, let socket = guest.qemu?.qmpSocket else { return }
            logger.debug("guest \(guest.identity.name): QMP at \(socket): \(error)")
        }
    }

    /// One command (QMP's JSON) over the guest's QMP socket; its reply as JSON text
    /// (`{"return":…}`, or `{"error":{}}` when QEMU refused it), nil when the monitor is
    /// busy, does not answer, or answers for another guest.
    func command(_ guest: TrackedGuest, _ command: String) -> String? {
        guard case .object(let request)? = try? QMPValue(parsing: Array(command.utf8)),
            case .string(let name)? = request["execute"]
        else { return nil }
        let arguments: [String: QMPValue]? = if case .object(let arguments)? = request["arguments"] { arguments } else { nil }
        let timeout = self.timeout
        do {
            let reply = try ask(guest) { qmp throws(QMPError) in try qmp.execute(name, arguments: arguments, timeout: timeout) }
            return String(decoding: QMPValue.object(["return": reply]).serialized(), as: UTF8.self)
        } catch {
            if case .qmp(.commandFailed) = error { return #"{"error":{}}"# }
            return nil
        }
    }

    /// Reads a Proxmox VE guest's `lock:` (its `VMID.conf`); a config that cannot be read
    /// counts as locked: what Proxmox is doing with the guest is not known.
    func refreshProxmoxLock(_ guest: TrackedGuest) {
        guard guest.source == .proxmox, let vmid = guest.qemu?.vmid else { return }
        do {
            let config = try ProxmoxVMConfig.read(vmid: vmid, directory: proxmoxConfigDirectory)
            guest.facts.proxmoxLock = config.lock
        } catch {
            guest.facts.proxmoxLock = "its config \(proxmoxConfigDirectory)/\(vmid).conf cannot be read (\(error))"
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

import Glibc
import Foundation
import GuestMemory
import Logging
import QEMUGuests
import SamepageModel

/// Finds the QEMU processes libvirt does not manage (Proxmox VE's qemu-server, hand-written
/// units, anything else) in /proc, at the reconcile interval or when asked, and names each
/// one's guest (``QEMUGuestHandle``).
///
/// Its own room: the discovery (which re-reads only new or changed processes), the time of
/// the next pass and the QEMUs already warned about are read by nothing else. It decides
/// nothing about the guest table: the worker matches what it returns against its guests.
struct QEMUScanner {
    let logger: Logger
    let interval: Duration
    private let discovery: QEMUGuestDiscovery
    /// The host's process list, shared with who maps guest RAM.
    private let processes: ProcessTables
    private var nextScan = ContinuousClock.now
    /// QEMUs outside libvirt already warned about (no identity of their own).
    private var warned = Set<pid_t>()
    /// Processes named like a QEMU and ignored as untrusted, already warned about.
    private var untrustedWarned = Set<pid_t>()
    /// The processes named like a QEMU that are ignored as untrusted, as of the latest pass,
    /// by pid: what `list` and `dominfo` say about them.
    private(set) var ignored: [IgnoredProcess] = []

    /// A scanner when `[qemu] enabled`; nil otherwise.
    init?(configuration: AgentConfiguration, processes: ProcessTables, logger: Logger) {
        let qemu = configuration.qemuGuests
        guard qemu.enabled else { return nil }
        self.processes = processes
        discovery = QEMUGuestDiscovery(
            procRoot: processes.procRoot, libvirtRunDirectory: configuration.libvirtRunDirectory,
            proxmoxRunDirectories: Set([qemu.proxmoxRunDirectory] + QEMUGuestCommandLine.defaultProxmoxRunDirectories).sorted(),
            trust: Self.hypervisorTrust(qemu.hypervisorUsers, logger: logger))
        interval = configuration.reconcileInterval
        self.logger = logger
    }

    /// The guests of the QEMUs outside libvirt running now, one per identity, when a pass is
    /// due at `now` or `force`d; nil when none is due. A QEMU whose identity another one
    /// already has is left out (warned about once): two guests must never share one.
    mutating func scan(at now: ContinuousClock.Instant, force: Bool) -> [QEMUGuestHandle]? {
        guard force || now >= nextScan else { return nil }
        nextScan = now + interval
        var seen = Set<UUID>()
        var handles: [QEMUGuestHandle] = []
        // The process table the mapping index took this iteration, if it did (under a second
        // old): /proc is read once for both.
        for found in discovery.refresh(from: processes.table(at: now)) where found.managedByLibvirt == nil {
            guard let handle = QEMUGuestHandle(found) else { continue }
            guard seen.insert(handle.uuid).inserted else {
                if warned.insert(found.pid).inserted {
                    logger.warning("QEMU \(found.pid) (\(handle.name)) has the identity of another QEMU outside libvirt (\(handle.uuid)); give each guest its own -uuid or -name; it is not followed")
                }
                continue
            }
            handles.append(handle)
        }
        // Processes named like a QEMU that the kernel's facts do not make a hypervisor: said
        // once each, never contacted, listed or read.
        let untrusted = discovery.untrusted.values.sorted { $0.pid < $1.pid }
        for process in untrusted where untrustedWarned.insert(process.pid).inserted {
            logger.warning("process \(process.pid) looks like a QEMU but is ignored: \(process.reason)")
        }
        untrustedWarned.formIntersection(discovery.untrusted.keys)
        // Bounded: any user can start processes named kvm by the thousand.
        ignored = untrusted.prefix(Self.maximumIgnoredReported).map(Self.ignoredProcess)
        return handles
    }

    /// The most ignored processes the status carries (the lowest pids); the log names each.
    static let maximumIgnoredReported = 32

    /// An untrusted process as the model reports it.
    static func ignoredProcess(_ process: UntrustedQEMU) -> IgnoredProcess {
        IgnoredProcess(
            pid: process.pid, uid: process.uid, executable: process.executable, reason: process.reason,
            claimedName: process.claimedName, claimedUUID: process.claimedUUID)
    }

    /// Who may be a hypervisor: root and the configured users that exist here.
    static func hypervisorTrust(_ users: [String], logger: Logger) -> ProcessTrust {
        let (trust, unknown) = ProcessTrust.users(users)
        if !unknown.isEmpty {
            logger.notice("qemu.hypervisor_users: no such user on this host: \(unknown.joined(separator: ", ")) (ignored)")
        }
        return trust
    }
}

import Glibc
import Foundation
import GuestMemory
import Libvirt
import LinuxSystem
import Logging
import SamepageModel

/// Who else reaches each guest's RAM: the processes besides QEMU that map its backends
/// (sorted into its vhost-user backends and others), and the VFIO, iommufd or vhost-vdpa
/// descriptors of its processes. Both keep reclaim off while they last.
///
/// Its own room: the index of which process maps which backend (re-read only where
/// processes are new or changed) and the time of its last pass are read by nothing else.
/// Shared by the worker (at every reconcile) and the reclaimer (before a pause, when the
/// index is over a second old), hence a class.
final class GuestMappers {
    let logger: Logger
    /// Which processes map which backends.
    private let index: ProcessMappingIndex
    /// The host's process list, shared with the QEMU scanner.
    let processes: ProcessTables
    /// When the process table the index was last refreshed from was taken.
    private(set) var lastRefresh = ContinuousClock.now - .seconds(60)

    init(logger: Logger, processes: ProcessTables) {
        self.logger = logger
        self.processes = processes
        index = ProcessMappingIndex(procRoot: processes.procRoot)
    }

    /// Refreshes the mappers of `guests` when the index is older than `age`, from a process
    /// table under `age` old too. Returns whether it did.
    @discardableResult
    func refresh(_ guests: [TrackedGuest], ifOlderThan age: Duration) -> Bool {
        guard ContinuousClock.now - lastRefresh > age else { return false }
        refresh(guests, tableUnder: min(age, ProcessTables.sharedFor))
        return true
    }

    /// Finds the processes besides QEMU (and us) that map each guest's RAM backends, in one
    /// pass over /proc (the process table, when the QEMU scanner took one under
    /// ``ProcessTables/sharedFor`` ago), and sorts them into the guest's vhost-user backends
    /// and others. Run at map time and at every reconcile, so a process that maps a backend
    /// later keeps reclaim off within one reconcile interval.
    func refresh(_ guests: [TrackedGuest], tableUnder maxAge: Duration = ProcessTables.sharedFor) {
        let files = Set(guests.flatMap { $0.regions.map(\.file) })
        let processTable = processes.table(maxAge: maxAge)
        let pass = index.refresh(from: processTable)
        lastRefresh = processTable.taken
        let mappers = index.processes(mappingAny: files)
        // A process that cannot be inspected might map any backend: it counts as a mapper of
        // every guest (reclaim fails closed), named with why.
        let unreadable = pass.unreadable.filter { $0.key != getpid() }.sorted { $0.key < $1.key }.map { pid, error in
            MapperProcess(pid: pid, command: "cannot inspect: \(error)")
        }
        var table: UnixSocketTable?
        var tableError: SystemError?
        for guest in guests {
            guard let qemu = guest.process?.pid else { continue }
            let others = Set(guest.regions.flatMap { mappers[$0.file] ?? [] }).subtracting([qemu, getpid()]).sorted()
            var backends: [pid_t: String] = [:]
            if !others.isEmpty && !guest.vhostUserSockets.isEmpty {
                if table == nil && tableError == nil {
                    do { table = try UnixSocketTable.current() } catch { tableError = error }
                }
                if let table {
                    backends = VhostUserBackends.identify(qemu: qemu, mappers: others, socketPaths: guest.vhostUserSockets, table: table)
                } else if let tableError {
                    logger.warning("guest \(guest.identity.name): cannot tell vhost-user backends from other mappers: \(tableError)")
                }
            }
            guest.facts.vhostUserBackends = others.compactMap { pid in
                backends[pid].map { MapperProcess(pid: pid, command: MapperProcess.command(of: pid), socket: $0) }
            }
            guest.facts.otherMappers = others.filter { backends[$0] == nil }.map { MapperProcess(pid: $0, command: MapperProcess.command(of: $0)) }
                + unreadable
        }
    }

    /// Checks that neither the guest's QEMU nor its vhost-user backends hold a VFIO, iommufd
    /// or vhost-vdpa descriptor (a device that DMAs into guest RAM while the guest is
    /// suspended). A process that cannot be inspected counts as holding one. Returns whether
    /// none does (false too when the guest has no QEMU process).
    @discardableResult
    static func checkDMADescriptors(_ guest: TrackedGuest) -> Bool {
        guard let qemu = guest.process?.pid else { return false }
        var found: [String] = []
        for (pid, command) in [(qemu, "qemu")] + guest.facts.vhostUserBackends.map({ ($0.pid, $0.command) }) {
            do {
                found += try DMADevices.held(by: pid).map { "\($0) (\(command) \(pid))" }
            } catch {
                found.append("cannot inspect \(command) \(pid): \(error)")
            }
        }
        guest.facts.dmaDescriptors = found
        return found.isEmpty
    }

    /// The socket paths a guest's vhost-user backends are reached on: those the XML names, and,
    /// when the XML has vhost-user devices, the vhost-user chardevs on QEMU's command line
    /// (where the socket of a virtiofsd libvirt started itself is found).
    static func vhostUserSockets(_ definition: DomainDefinition, commandLine: [String]?) -> Set<String> {
        var sockets = Set(definition.vhostUserDevices.compactMap(\.socketPath) + definition.virtiofsFilesystems.compactMap(\.socketPath))
        if !definition.vhostUserDevices.isEmpty || !definition.virtiofsFilesystems.isEmpty, let commandLine {
            sockets.formUnion(QEMUCommandLine.vhostUserSocketPaths(arguments: commandLine))
        }
        return sockets
    }
}

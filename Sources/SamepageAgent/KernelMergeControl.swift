import Foundation
import GuestMemory
import KernelKSM
import Logging
import Libvirt
import QMP
import SamepageCore
import SamepageModel

/// The kernel's own KSM: what it merged of each guest (`/proc/PID/ksm_stat`, always), and,
/// while samepaged governs ksmd, which guests it may merge. A guest is mergeable exactly when
/// ``KernelKSMGovernor/mergeRefusal(policy:kernel:noSharePages:)`` allows it; every other
/// guest's memory backends get `merge` off (QEMU then unmerges them), through QEMU's monitor
/// (`qom-set` of each backend of `query-memdev`). ksmd is held stopped while any guest's
/// state is not known to be what its policy allows (fail closed).
///
/// Its own room: samepaged's hold on ksmd, the kernel's figures when it does not govern, and
/// the `merge` values it changed are read by nothing else. The guest table and libvirt's
/// connection are passed to each call; what it asks of a guest outside libvirt goes through
/// ``QEMUGuestQueries`` (its identity checked).
final class KernelMergeControl {
    let configuration: AgentConfiguration
    let logger: Logger
    let queries: QEMUGuestQueries
    /// samepaged's hold on ksmd, while `[kernel_ksm] enabled`.
    private(set) var governor: KernelKSMGovernor?
    /// The kernel's figures when samepaged does not govern ksmd, read at each reconcile.
    private var ungoverned = KernelKSMStatus()
    /// The `merge` values samepaged changed, by guest UUID and QEMU run (`TrackedGuest.run`),
    /// then backend id: kept here, not by the guest, so that a guest mapped again (a device
    /// change) keeps its originals, and never put back on another run.
    private var originalMerge: [UUID: (run: String?, backends: [String: Bool])] = [:]

    /// Takes hold of ksmd when `[kernel_ksm] enabled`. Throws when it cannot (the kernel has
    /// no KSM, its settings cannot be saved).
    init(configuration: AgentConfiguration, logger: Logger, queries: QEMUGuestQueries) throws {
        self.configuration = configuration
        self.logger = logger
        self.queries = queries
        if configuration.kernelKSM.enabled { governor = try makeGovernor(configuration.kernelKSM) }
    }

    /// What the snapshot shows of the kernel's KSM.
    var status: KernelKSMStatus { governor?.status ?? ungoverned }
    /// Reads the kernel's figures for every guest whose QEMU is known and, governing, makes
    /// each guest's `merge` property what its policy allows. At every reconcile and policy
    /// reload.
    func reconcile(_ guests: [UUID: TrackedGuest], connection: LibvirtConnection?) {
        for guest in guests.values {
            if guest.process == nil && guest.qemuPID == nil {
                if let handle = guest.qemu {
                    guest.qemuPID = handle.pid
                } else if let process = try? QEMUProcess.libvirtGuest(
                    name: guest.identity.name, uuid: guest.uuid, runDirectory: configuration.libvirtRunDirectory) {
                    guest.qemuPID = process.pid
                }
            }
            if let pid = guest.process?.pid ?? guest.qemuPID { guest.kernelStat = try? ProcessKSMStat.read(pid: pid) }
            guard let governor else { continue }
            let refusal: String?
            if let handle = guest.qemu {
                refusal = KernelKSMGovernor.mergeRefusal(
                    policy: guest.policy, kernel: governor.configuration, noSharePages: handle.commandLine.memMergeOff)
            } else if guest.definition == nil {
                refusal = "its domain XML could not be read"
            } else {
                refusal = KernelKSMGovernor.mergeRefusal(
                    policy: guest.policy, kernel: governor.configuration, noSharePages: guest.definition?.memoryBacking.noSharePages ?? true)
            }
            guest.kernelMergeRefusal = refusal
            let wanted = refusal == nil
            guard guest.kernelMerge != wanted else { continue }
            // A job (migration, snapshot) holds the domain: no monitor command now. Until
            // its merging is known to be off, ksmd stays stopped (kernelMergeHoldBack).
            guard !guest.facts.activeJob else { continue }
            guest.kernelMerge = nil
            if setKernelMerge(guest, to: wanted, monitor: { command in self.command(guest, command, connection: connection) }) {
                guest.kernelMerge = wanted
                logger.notice("guest \(guest.identity.name): kernel merging \(wanted ? "on" : "off")\(refusal.map { " (\($0))" } ?? "")")
            }
        }
        // Not governing: the kernel's figures are still shown.
        if governor == nil { KernelKSMGovernor.read(KernelKSM(root: configuration.kernelKSMRoot), into: &ungoverned) }
    }

    /// Asks ksmd's run of its governor (every 5 s; at once with `force`), held back while
    /// ``holdBack(_:connected:reconciledOnce:)`` says why.
    func tick(_ guests: [UUID: TrackedGuest], connected: Bool, reconciledOnce: Bool, force: Bool = false) {
        governor?.tick(now: ContinuousClock.now, force: force, holdBack: holdBack(guests, connected: connected, reconciledOnce: reconciledOnce))
    }

    /// Why ksmd must not run now, governing: libvirt not reconciled since samepaged started or
    /// since the connection came back, or a guest the kernel may not merge whose `merge` is
    /// not known to be off. nil when ksmd may run.
    func holdBack(_ guests: [UUID: TrackedGuest], connected: Bool, reconciledOnce: Bool) -> String? {
        guard governor != nil else { return nil }
        guard connected, reconciledOnce else { return "libvirt is not connected: guests' merging cannot be checked" }
        let unsettled = guests.values.filter { $0.kernelMergeRefusal != nil && $0.kernelMerge != false }
        guard unsettled.isEmpty else {
            return "merging is not yet off for \(unsettled.map(\.identity.name).sorted().joined(separator: ", ")), outside the kernel's trust group"
        }
        return nil
    }

    /// Sets `merge` on every memory backend of the guest's QEMU; remembers each backend's
    /// value before samepaged first changed it, to put back when samepaged stops. Returns
    /// whether every backend now has `value`; an answer that lists no backend, or one that
    /// cannot be read, is a failure.
    func setKernelMerge(_ guest: TrackedGuest, to value: Bool, monitor: (String) -> String?) -> Bool {
        guard let reply = monitor(#"{"execute":"query-memdev"}"#),
            let backends = Self.memoryBackends(fromQueryMemdev: reply), !backends.isEmpty
        else {
            logger.warning("guest \(guest.identity.name): cannot list its memory backends over QEMU's monitor; its kernel merging is not changed")
            return false
        }
        var originals = originalMerge[guest.uuid]
        if originals?.run != guest.run { originals = (guest.run, [:]) }
        var done = true
        for (id, merge) in backends where merge != value {
            if originals?.backends[id] == nil { originals?.backends[id] = merge }
            guard monitor(Self.qomSetMerge(backend: id, value)).map({ !$0.contains(#""error""#) }) == true else {
                logger.warning("guest \(guest.identity.name): cannot set merge=\(value) on memory backend \(id)")
                done = false
                continue
            }
        }
        originalMerge[guest.uuid] = originals
        return done
    }

    private func makeGovernor(_ kernel: KernelKSMConfiguration) throws -> KernelKSMGovernor {
        try KernelKSMGovernor(
            configuration: kernel, ksm: KernelKSM(root: configuration.kernelKSMRoot),
            savedPath: configuration.kernelKSMSaved, logger: logger)
    }

    /// Governs ksmd as `kernel` asks (a reload, `samepage tune --kernel-…`): takes hold of it,
    /// changes its settings, or lets it go. A new trust group is applied to every guest at
    /// once, with ksmd stopped meanwhile, so that no guest newly outside it is merged.
    ///
    /// The caller publishes afterwards.
    func govern(
        _ kernel: KernelKSMConfiguration, guests: [UUID: TrackedGuest], connection: LibvirtConnection?, reconciledOnce: Bool
    ) -> Result<KernelKSMStatus, KernelKSMRefusal> {
        switch (governor, kernel.enabled) {
        case (nil, false):
            break
        case (let governor?, true):
            let groupChanged = governor.configuration.trustGroup != kernel.trustGroup
            governor.reconfigure(kernel)
            if groupChanged, reconciledOnce { reconcile(guests, connection: connection) }
        case (nil, true):
            do {
                governor = try makeGovernor(kernel)
            } catch {
                logger.error("kernel_ksm: not governing ksmd: \(error)")
                return .failure(KernelKSMRefusal("\(error)"))
            }
            if reconciledOnce { reconcile(guests, connection: connection) }
        case (_?, false):
            release(guests, connection: connection)
            logger.notice("kernel_ksm: samepaged no longer governs ksmd ([kernel_ksm] enabled = false)")
        }
        tick(guests, connected: connection != nil, reconciledOnce: reconciledOnce, force: true)
        if governor == nil { KernelKSMGovernor.read(KernelKSM(root: configuration.kernelKSMRoot), into: &ungoverned) }
        return .success(status)
    }

    /// Gives the host's KSM back as it was: ksmd stopped, each guest's `merge` property put
    /// back, then ksmd's own settings. At stop, and when a reload turns governing off.
    func release(_ guests: [UUID: TrackedGuest], connection: LibvirtConnection?) {
        guard let governor else { return }
        governor.stopKsmd()
        restoreMerge(guests, connection: connection)
        governor.restore()
        self.governor = nil
        for guest in guests.values {
            guest.kernelMerge = nil
            guest.kernelMergeRefusal = nil
        }
    }

    /// Puts back the `merge` property samepaged changed on each running guest's backends
    /// (ksmd is stopped first). What cannot be put back is logged.
    private func restoreMerge(_ guests: [UUID: TrackedGuest], connection: LibvirtConnection?) {
        defer { originalMerge = [:] }
        guard !originalMerge.isEmpty else { return }
        for (uuid, originals) in originalMerge {
            guard let guest = guests[uuid], guest.run == originals.run else { continue }
            if guest.qemu == nil && connection == nil {
                logger.error("kernel_ksm: libvirt is not connected: the merge property of guest \(guest.identity.name) stays as samepaged set it")
                continue
            }
            for (id, merge) in originals.backends {
                let command = Self.qomSetMerge(backend: id, merge)
                let reply = self.command(guest, command, connection: connection)
                if reply.map({ !$0.contains(#""error""#) }) != true {
                    logger.error("guest \(guest.identity.name): cannot put merge=\(merge) back on memory backend \(id)")
                }
            }
            guest.kernelMerge = nil
        }
    }

    /// One command (QMP's JSON) to the guest's QEMU: over its own QMP socket outside
    /// libvirt (``QEMUGuestQueries/command(_:_:)``), through libvirtd's monitor passthrough
    /// for libvirt's guests; its reply as JSON text, nil when there is none.
    private func command(_ guest: TrackedGuest, _ command: String, connection: LibvirtConnection?) -> String? {
        if guest.qemu != nil { return queries.command(guest, command) }
        guard let connection else { return nil }
        let uuid = guest.uuid
        guard case .success(let reply)? = LibvirtCall({ () throws(LibvirtError) in try connection.qemuMonitorCommand(uuid: uuid, command) })
            .wait(configuration.libvirtCallTimeout)
        else { return nil }
        return reply
    }

    /// A `qom-set` of a memory backend's `merge` property. The id comes from QEMU's own
    /// `query-memdev` and QEMU ids are `[A-Za-z][A-Za-z0-9._-]*`; anything else is not sent.
    static func qomSetMerge(backend id: String, _ value: Bool) -> String {
        guard id.first?.isLetter == true, id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) else {
            return #"{"execute":"query-memdev"}"#
        }
        return #"{"execute":"qom-set","arguments":{"path":"/objects/\#(id)","property":"merge","value":\#(value)}}"#
    }

    /// The backends of a `query-memdev` reply, each with its `merge` property; nil when the
    /// reply is not one or lists a backend without an `id` or `merge` (QEMU before 2.11):
    /// a backend that cannot be addressed must not be taken for one that is not mergeable.
    static func memoryBackends(fromQueryMemdev reply: String) -> [(id: String, merge: Bool)]? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(reply.utf8)) as? [String: Any],
            let list = object["return"] as? [[String: Any]]
        else { return nil }
        var backends: [(id: String, merge: Bool)] = []
        for backend in list {
            guard let id = backend["id"] as? String, let merge = backend["merge"] as? Bool else { return nil }
            backends.append((id, merge))
        }
        return backends
    }

    /// The kernel's figures for the guest, as its status shows them.
    func guestStatus(_ guest: TrackedGuest) -> GuestKernelKSM? {
        guard guest.kernelStat != nil || governor != nil else { return nil }
        return GuestKernelKSM(
            mergeable: governor == nil ? nil : guest.kernelMerge, refused: guest.kernelMergeRefusal,
            mergingPages: guest.kernelStat?.mergingPages, zeroPages: guest.kernelStat?.zeroPages,
            processProfit: guest.kernelStat?.processProfit)
    }
}

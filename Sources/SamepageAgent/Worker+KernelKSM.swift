import Foundation
import GuestMemory
import KernelKSM
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
extension Worker {
    /// Reads the kernel's figures for every guest whose QEMU is known and, governing, makes
    /// each guest's `merge` property what its policy allows. At every reconcile and policy
    /// reload.
    func reconcileKernelKSM(connection: LibvirtConnection?) {
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
            guard let governor = kernelGovernor else { continue }
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
            let monitor: (String) -> String? = { [unowned self] command in
                if guest.qemu != nil { return self.qmpCommand(guest, command) }
                guard let connection else { return nil }
                return self.monitor(guest.uuid, command, connection: connection)
            }
            if setKernelMerge(guest, to: wanted, monitor: monitor) {
                guest.kernelMerge = wanted
                logger.notice("guest \(guest.identity.name): kernel merging \(wanted ? "on" : "off")\(refusal.map { " (\($0))" } ?? "")")
            }
        }
        // Not governing: the kernel's figures are still shown.
        if kernelGovernor == nil { KernelKSMGovernor.read(KernelKSM(root: configuration.kernelKSMRoot), into: &ungovernedKernelKSM) }
    }

    /// Why ksmd must not run now, governing: libvirt not reconciled since samepaged started or
    /// since the connection came back, or a guest the kernel may not merge whose `merge` is
    /// not known to be off. nil when ksmd may run.
    func kernelMergeHoldBack() -> String? {
        guard kernelGovernor != nil else { return nil }
        guard connection != nil, reconciledOnce else { return "libvirt is not connected: guests' merging cannot be checked" }
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

    func makeKernelGovernor(_ kernel: KernelKSMConfiguration) throws -> KernelKSMGovernor {
        try KernelKSMGovernor(
            configuration: kernel, ksm: KernelKSM(root: configuration.kernelKSMRoot),
            savedPath: configuration.kernelKSMSaved, logger: logger)
    }

    /// Governs ksmd as `kernel` asks (a reload, `samepage tune --kernel-…`): takes hold of it,
    /// changes its settings, or lets it go. A new trust group is applied to every guest at
    /// once, with ksmd stopped meanwhile, so that no guest newly outside it is merged.
    func governKernelKSM(_ kernel: KernelKSMConfiguration) -> Result<KernelKSMStatus, KernelKSMRefusal> {
        switch (kernelGovernor, kernel.enabled) {
        case (nil, false):
            break
        case (let governor?, true):
            let groupChanged = governor.configuration.trustGroup != kernel.trustGroup
            governor.reconfigure(kernel)
            if groupChanged, reconciledOnce { reconcileKernelKSM(connection: connection) }
        case (nil, true):
            do {
                kernelGovernor = try makeKernelGovernor(kernel)
            } catch {
                logger.error("kernel_ksm: not governing ksmd: \(error)")
                return .failure(KernelKSMRefusal("\(error)"))
            }
            if reconciledOnce { reconcileKernelKSM(connection: connection) }
        case (_?, false):
            releaseKernelKSM()
            logger.notice("kernel_ksm: samepaged no longer governs ksmd ([kernel_ksm] enabled = false)")
        }
        kernelGovernor?.tick(now: ContinuousClock.now, force: true, holdBack: kernelMergeHoldBack())
        if kernelGovernor == nil { KernelKSMGovernor.read(KernelKSM(root: configuration.kernelKSMRoot), into: &ungovernedKernelKSM) }
        publish()
        return .success(kernelGovernor?.status ?? ungovernedKernelKSM)
    }

    /// Gives the host's KSM back as it was: ksmd stopped, each guest's `merge` property put
    /// back, then ksmd's own settings. At stop, and when a reload turns governing off.
    func releaseKernelKSM() {
        guard let governor = kernelGovernor else { return }
        governor.stopKsmd()
        restoreKernelMerge()
        governor.restore()
        kernelGovernor = nil
        for guest in guests.values {
            guest.kernelMerge = nil
            guest.kernelMergeRefusal = nil
        }
    }

    /// Puts back the `merge` property samepaged changed on each running guest's backends
    /// (ksmd is stopped first). What cannot be put back is logged.
    func restoreKernelMerge() {
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
                let reply = guest.qemu != nil ? qmpCommand(guest, command) : connection.flatMap { monitor(uuid, command, connection: $0) }
                if reply.map({ !$0.contains(#""error""#) }) != true {
                    logger.error("guest \(guest.identity.name): cannot put merge=\(merge) back on memory backend \(id)")
                }
            }
            guest.kernelMerge = nil
        }
    }

    /// One command (QMP's JSON) over the QMP socket of a guest outside libvirt, in a
    /// connection of its own; its reply as JSON text, nil when the monitor is busy or does
    /// not answer.
    private func qmpCommand(_ guest: TrackedGuest, _ command: String) -> String? {
        guard let socket = guest.qemu?.qmpSocket,
            case .object(let request)? = try? QMPValue(parsing: Array(command.utf8)),
            case .string(let name)? = request["execute"]
        else { return nil }
        let timeout = Duration.milliseconds(configuration.qemuGuests.qmpTimeoutMs)
        guard var qmp = try? QMPConnection.connect(path: socket, timeout: timeout) else { return nil }
        let arguments: [String: QMPValue]? = if case .object(let arguments)? = request["arguments"] { arguments } else { nil }
        do {
            let reply = try qmp.execute(name, arguments: arguments, timeout: timeout)
            return String(decoding: QMPValue.object(["return": reply]).serialized(), as: UTF8.self)
        } catch {
            if case .commandFailed = error { return #"{"error":{}}"# }
            return nil
        }
    }

    private func monitor(_ uuid: UUID, _ command: String, connection: LibvirtConnection) -> String? {
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
    func kernelStatus(_ guest: TrackedGuest) -> GuestKernelKSM? {
        guard guest.kernelStat != nil || kernelGovernor != nil else { return nil }
        return GuestKernelKSM(
            mergeable: kernelGovernor == nil ? nil : guest.kernelMerge, refused: guest.kernelMergeRefusal,
            mergingPages: guest.kernelStat?.mergingPages, zeroPages: guest.kernelStat?.zeroPages,
            processProfit: guest.kernelStat?.processProfit)
    }
}

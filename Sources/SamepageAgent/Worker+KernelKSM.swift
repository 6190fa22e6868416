import Foundation
import GuestMemory
import KernelKSM
import Libvirt
import SamepageCore
import SamepageModel

/// The kernel's own KSM: what it merged of each guest (`/proc/PID/ksm_stat`, always), and,
/// while samepaged governs ksmd, which guests it may merge. A guest is mergeable exactly when
/// ``KernelKSMGovernor/mergeRefusal(policy:kernel:)`` allows it; every other guest's memory
/// backends get `merge` off (QEMU then unmerges them), through QEMU's monitor (`qom-set` of
/// each backend of `query-memdev`).
extension Worker {
    /// Reads the kernel's figures for every guest whose QEMU is known and, governing, makes
    /// each guest's `merge` property what its policy allows. At every reconcile.
    func reconcileKernelKSM(connection: LibvirtConnection) {
        for guest in guests.values {
            if guest.process == nil && guest.qemuPID == nil {
                do {
                    let process = try QEMUProcess.libvirtGuest(name: guest.identity.name, uuid: guest.uuid, runDirectory: configuration.libvirtRunDirectory)
                    guest.qemuPID = process.pid
                } catch {}
            }
            if let pid = guest.process?.pid ?? guest.qemuPID { guest.kernelStat = try? ProcessKSMStat.read(pid: pid) }
            guard let governor = kernelGovernor else { continue }
            let refusal = KernelKSMGovernor.mergeRefusal(policy: guest.policy, kernel: governor.configuration)
            guest.kernelMergeRefusal = refusal
            let wanted = refusal == nil
            guard guest.kernelMerge != wanted else { continue }
            if setKernelMerge(guest, to: wanted, connection: connection) {
                guest.kernelMerge = wanted
                logger.notice("guest \(guest.identity.name): kernel merging \(wanted ? "on" : "off")\(refusal.map { " (\($0))" } ?? "")")
            }
        }
        // Not governing: the kernel's figures are still shown.
        if kernelGovernor == nil { KernelKSMGovernor.read(KernelKSM(root: configuration.kernelKSMRoot), into: &ungovernedKernelKSM) }
    }

    /// Sets `merge` on every memory backend of the guest's QEMU; remembers each backend's
    /// value before its first change, to put back when samepaged stops. Returns whether
    /// every backend now has `value`.
    func setKernelMerge(_ guest: TrackedGuest, to value: Bool, connection: LibvirtConnection) -> Bool {
        let uuid = guest.uuid
        let timeout = configuration.libvirtCallTimeout
        func monitor(_ command: String) -> String? {
            guard case .success(let reply)? = LibvirtCall({ () throws(LibvirtError) in try connection.qemuMonitorCommand(uuid: uuid, command) }).wait(timeout)
            else { return nil }
            return reply
        }
        guard let reply = monitor(#"{"execute":"query-memdev"}"#), let backends = Self.memoryBackends(fromQueryMemdev: reply) else {
            logger.warning("guest \(guest.identity.name): cannot list its memory backends over QEMU's monitor; kernel merging left as it is")
            return false
        }
        var done = true
        for (id, merge) in backends where merge != value {
            if guest.originalMerge[id] == nil { guest.originalMerge[id] = merge }
            let command = #"{"execute":"qom-set","arguments":{"path":"/objects/\#(id)","property":"merge","value":\#(value)}}"#
            guard let reply = monitor(command), !reply.contains(#""error""#) else {
                logger.warning("guest \(guest.identity.name): cannot set merge=\(value) on memory backend \(id)")
                done = false
                continue
            }
        }
        return done
    }

    /// Puts back the `merge` property samepaged changed on each guest's backends.
    func restoreKernelMerge() {
        guard let connection else { return }
        for guest in guests.values where !guest.originalMerge.isEmpty {
            for (id, merge) in guest.originalMerge {
                let command = #"{"execute":"qom-set","arguments":{"path":"/objects/\#(id)","property":"merge","value":\#(merge)}}"#
                let uuid = guest.uuid
                _ = LibvirtCall({ () throws(LibvirtError) in try connection.qemuMonitorCommand(uuid: uuid, command) }).wait(configuration.libvirtCallTimeout)
            }
            guest.originalMerge = [:]
            guest.kernelMerge = nil
        }
    }

    /// The backends of a `query-memdev` reply, each with its `merge` property; nil when the
    /// reply is not one. Backends without an `id` (QEMU before 2.11) cannot be addressed
    /// and are left out.
    static func memoryBackends(fromQueryMemdev reply: String) -> [(id: String, merge: Bool)]? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(reply.utf8)) as? [String: Any],
            let list = object["return"] as? [[String: Any]]
        else { return nil }
        return list.compactMap { backend in
            guard let id = backend["id"] as? String, let merge = backend["merge"] as? Bool else { return nil }
            return (id, merge)
        }
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

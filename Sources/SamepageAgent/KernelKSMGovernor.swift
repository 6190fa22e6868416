import Foundation
import KernelKSM
import LinuxSystem
import Logging
import SamepageCore
import SamepageModel

/// samepaged's hold on the kernel's ksmd while `[kernel_ksm] enabled`, replacing ksmtuned:
///
/// - At start the host's own settings are saved to a file, then ksmd is set as the
///   configuration asks (`use_zero_pages`, `smart_scan`, the advisor, `max_page_sharing`).
///   If the file is already there, an earlier samepaged stopped without putting them back
///   (it crashed): the file, not the kernel's present values, holds the host's settings.
/// - `run` follows memory (``KernelKSMRunPolicy``): ksmd runs while memory is short.
/// - When samepaged stops, the saved settings are put back and the file removed; after a
///   crash `samepaged --resume-paused` does it (``restoreSaved(path:ksm:logger:)``).
///
/// Lives on the agent's thread; sysfs reads and writes are blocking calls made there.
final class KernelKSMGovernor {
    let ksm: KernelKSM
    private(set) var configuration: KernelKSMConfiguration
    let savedPath: String
    let logger: Logger
    /// The host's own settings, put back at the end.
    let saved: KernelKSMSettings
    private var policy: KernelKSMRunPolicy
    private var nextDecision = ContinuousClock.now
    /// ksmd was stopped for a hold (see ``tick(now:force:holdBack:)``) and the hold lasts.
    private var heldStopped = false
    private(set) var status = KernelKSMStatus()

    /// How often memory is looked at to decide whether ksmd runs.
    static let decisionInterval: Duration = .seconds(5)

    struct Refused: Error, CustomStringConvertible {
        var description: String
    }

    /// Takes hold of ksmd: saves the host's settings (or finds an earlier run's) and applies
    /// the configuration's. ksmd is stopped until the first decision (made at once).
    ///
    /// - Throws: when the kernel has no KSM, or its settings cannot be read or saved: a
    ///   samepaged that could not put them back must not change them.
    init(configuration: KernelKSMConfiguration, ksm: KernelKSM = KernelKSM(), savedPath: String, logger: Logger) throws {
        guard ksm.isPresent else { throw Refused(description: "kernel_ksm: the kernel has no KSM (\(ksm.root) is missing)") }
        self.ksm = ksm
        self.configuration = configuration
        self.savedPath = savedPath
        self.logger = logger
        // Holding ksmd back from guests outside the trust group is a promise: a samepaged that
        // cannot write `run` (a read-only /sys, as systemd's ProtectKernelTunables= makes it)
        // cannot keep it, and refuses to start rather than say "held back" and govern nothing.
        do {
            let run = try ksm.read(.run) ?? .stop
            try ksm.write(.run, run)
        } catch {
            throw Refused(description: "kernel_ksm: cannot write \(ksm.root)/run (\(error)): samepaged could not hold ksmd back from guests outside kernel_ksm.trust_group; give the service write access to \(ksm.root) (the packaged unit has ReadWritePaths=\(ksm.root)) or set [kernel_ksm] enabled = false")
        }
        for (pid, command) in Self.otherGovernors() {
            logger.warning("kernel_ksm: \(command) (pid \(pid)) also sets ksmd's knobs and fights samepaged over them: stop it (systemctl disable --now \(command))")
        }
        if let earlier = try Self.readSaved(savedPath) {
            logger.warning("kernel_ksm: \(savedPath) holds the host's ksmd settings from an earlier samepaged that did not put them back; they will be put back when this one stops")
            saved = earlier
        } else {
            saved = try ksm.settings()
            try Self.writeSaved(saved, to: savedPath)
        }
        policy = KernelKSMRunPolicy(availableThresholdPercent: configuration.availableThresholdPercent, running: false)
        status.governed = true
        status.holdBackFailing = false
        status.holdBackFailures = 0
        let governing = apply(configuration)
        logger.notice("kernel_ksm: samepaged governs ksmd (\(governing)); the host's settings were \(saved)")
        // Stopped until every guest outside the trust group is known to have merging off.
        tick(now: ContinuousClock.now, force: true, holdBack: "samepaged has not yet seen every guest")
    }

    /// Sets ksmd as `configuration` asks and records it as the one in force; returns the
    /// settings written. A knob the kernel refuses is logged and listed in the status.
    @discardableResult
    private func apply(_ configuration: KernelKSMConfiguration) -> KernelKSMSettings {
        self.configuration = configuration
        policy.availableThresholdPercent = configuration.availableThresholdPercent
        status.trustGroup = configuration.trustGroup
        status.configuration = configuration
        let governing = KernelKSMSettings(governing: configuration, on: saved)
        let failures = ksm.apply(governing)
        for failure in failures { logger.error("kernel_ksm: cannot set \(failure)") }
        status.failures = failures.map(\.description)
        return governing
    }

    /// Governs ksmd with new settings (a reload, or `samepage tune --kernel-…`); the host's
    /// saved settings stay those found at start. The run decision is taken again at once.
    /// A new trust group stops ksmd first: the caller decides each guest's merging again
    /// before ksmd may run (``tick(now:force:holdBack:)`` with its hold).
    func reconfigure(_ configuration: KernelKSMConfiguration) {
        if configuration.trustGroup != self.configuration.trustGroup { stopKsmd() }
        let governing = apply(configuration)
        logger.notice("kernel_ksm: ksmd settings changed (\(governing))")
        nextDecision = ContinuousClock.now
        readStatus()
    }

    /// Stops ksmd (run = 0) before anything is put back at the end: no merging while the
    /// guests' `merge` properties return to their old values.
    func stopKsmd() {
        if (try? ksm.read(.run)) == .merge { try? ksm.write(.run, .stop) }
    }

    /// Decides whether ksmd runs, every ``decisionInterval``, and refreshes the counters.
    ///
    /// - Parameter holdBack: why ksmd must not run whatever memory says (a guest outside the
    ///   kernel's trust group whose merging could not be switched off yet); ksmd is stopped
    ///   until it is nil. Checked at every call, not only every interval.
    func tick(now: ContinuousClock.Instant, force: Bool = false, holdBack: String? = nil) {
        if let holdBack {
            // Written once when the hold starts (and again at each interval, should someone
            // have set run meanwhile), not read at every batch of the agent's loop.
            if !heldStopped || force || now >= nextDecision {
                if (try? ksm.read(.run)) != .stop {
                    do {
                        try ksm.write(.run, .stop)
                        logger.warning("kernel_ksm: ksmd stopped: \(holdBack)")
                        heldStopped = true
                        status.failures.removeAll { $0.hasPrefix(Self.holdBackFailure) }
                        status.holdBackFailing = false
                    } catch {
                        // Said at every interval while it lasts: guests may be merged that must not be.
                        logger.critical("kernel_ksm: \(Self.holdBackFailure) (\(error)): ksmd may merge guests outside the trust group while \(holdBack)")
                        status.failures.removeAll { $0.hasPrefix(Self.holdBackFailure) }
                        status.failures.append("\(Self.holdBackFailure): \(error)")
                        status.holdBackFailing = true
                        status.holdBackFailures = (status.holdBackFailures ?? 0) + 1
                        status.why = "cannot hold ksmd back: \(error)"
                        nextDecision = now + Self.decisionInterval
                        return
                    }
                } else {
                    heldStopped = true
                    status.holdBackFailing = false
                }
            }
            status.why = "held back: \(holdBack)"
            if force || now >= nextDecision {
                nextDecision = now + Self.decisionInterval
                readStatus()
            }
            return
        }
        // A hold just ended: decide at once.
        guard force || now >= nextDecision || heldStopped else { return }
        heldStopped = false
        nextDecision = now + Self.decisionInterval
        do {
            let decision = policy.decide(memory: try MemoryInfo.read(), pressure: try? PressureStall.read("memory"), now: now)
            let run: RunMode = decision.run ? .merge : .stop
            let current = try? ksm.read(.run)
            if current != run {
                try ksm.write(.run, run)
                logger.notice("kernel_ksm: ksmd \(decision.run ? "runs" : "stops"): \(decision.why)")
            }
            status.why = decision.why
        } catch {
            logger.error("kernel_ksm: cannot decide or set run: \(error)")
            status.why = "cannot decide: \(error)"
        }
        readStatus()
    }

    private func readStatus() { Self.read(ksm, into: &status) }

    /// Reads the kernel's figures and knobs into `status` (governed or not); a file the
    /// kernel lacks, or cannot be read, leaves its figure nil.
    static func read(_ ksm: KernelKSM, into status: inout KernelKSMStatus) {
        status.run = (try? ksm.read(.run)).flatMap { $0 }.map(\.rawValue)
        if let counters = try? ksm.counters() {
            status.pagesShared = counters.pagesShared
            status.pagesSharing = counters.pagesSharing
            status.pagesUnshared = counters.pagesUnshared
            status.pagesVolatile = counters.pagesVolatile
            status.fullScans = counters.fullScans
            status.ksmZeroPages = counters.ksmZeroPages
            status.generalProfit = counters.generalProfit
        }
        status.pagesToScan = (try? ksm.read(.pagesToScan)).flatMap { $0 }
        status.sleepMillisecs = (try? ksm.read(.sleepMillisecs)).flatMap { $0 }
        status.advisorMode = (try? ksm.read(.advisorMode)).flatMap { $0 }?.rawValue
    }

    /// Puts the host's settings back and removes the saved file. Every failure is logged;
    /// the file goes in any case (what could be put back was).
    func restore() {
        Self.restore(saved, path: savedPath, ksm: ksm, logger: logger)
        status.governed = false
    }

    /// Whether the kernel may merge a guest with `policy`, and why not: only guests in mode
    /// `merge` of the one trust group the kernel serves (KSM compares every mergeable page
    /// with every other, across processes, with no notion of tenants).
    static func mergeRefusal(policy: GuestPolicy, kernel: KernelKSMConfiguration, noSharePages: Bool = false) -> String? {
        guard !noSharePages else { return "its domain XML asks for no page sharing (<nosharepages/>)" }
        guard policy.mode == .merge else { return "policy mode \(policy.mode.rawValue): the kernel does not merge it" }
        guard let group = kernel.trustGroup else {
            return "kernel_ksm.trust_group is not set: the kernel merges no guest"
        }
        guard policy.trustGroup == group else {
            return "trust group \(policy.trustGroup.map { "\"\($0)\"" } ?? "of its own") is not kernel_ksm.trust_group \"\(group)\": the kernel merges across every mergeable process"
        }
        return nil
    }

    // MARK: The saved settings

    static func readSaved(_ path: String) throws -> KernelKSMSettings? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let bytes = try readWholeFile(path, limit: 64 << 10)
        do {
            return try JSONDecoder().decode(KernelKSMSettings.self, from: Data(bytes))
        } catch {
            throw Refused(description: "kernel_ksm: \(path) is not a saved settings file (\(error)); check /sys/kernel/mm/ksm and remove it")
        }
    }

    static func writeSaved(_ settings: KernelKSMSettings, to path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try encoder.encode(settings).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    /// Puts `settings` back; the saved file goes only once every knob is back, so that
    /// `samepaged --resume-paused` (or the next start) tries again.
    static func restore(_ settings: KernelKSMSettings, path: String, ksm: KernelKSM, logger: Logger) {
        let failures = ksm.apply(settings)
        for failure in failures { logger.error("kernel_ksm: cannot put back \(failure)") }
        guard failures.isEmpty else {
            logger.critical("kernel_ksm: \(failures.count) of the host's ksmd settings could not be put back; \(path) keeps them for samepaged --resume-paused or the next start")
            return
        }
        logger.notice("kernel_ksm: the host's ksmd settings are back (\(settings))")
        try? FileManager.default.removeItem(atPath: path)
    }

    /// What a failed hold-back says in the status's failures.
    static let holdBackFailure = "cannot stop ksmd for the hold-back"

    /// Other programs that set ksmd's knobs (ksmtuned), running now: pid and command name.
    static func otherGovernors(procRoot: String = "/proc") -> [(pid: Int32, command: String)] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: procRoot) else { return [] }
        return entries.compactMap { entry -> (pid: Int32, command: String)? in
            guard let pid = Int32(entry),
                let comm = try? String(contentsOfFile: "\(procRoot)/\(entry)/comm", encoding: .utf8)
                    .trimmingCharacters(in: .whitespacesAndNewlines),
                comm == "ksmtuned"
            else { return nil }
            return (pid, comm)
        }
    }

    /// After a samepaged that governed ksmd stopped without putting the host's settings back:
    /// puts them back from `path`, if the file is there. Returns whether it was.
    static func restoreSaved(path: String, ksm: KernelKSM = KernelKSM(), logger: Logger) throws -> Bool {
        guard let settings = try readSaved(path) else { return false }
        restore(settings, path: path, ksm: ksm, logger: logger)
        return true
    }
}

import Foundation
import GuestMemory
import LinuxSystem
import Logging
import SamepageCore

/// The guests' side of the ``PunchLedger``: what their mappings hold goes into it, a new
/// mapping of a backend takes back what it recorded, and it is saved to its file.
///
/// Lives on the agent's thread (the ``Reclaimer``'s). A guest's holes and refaulted pages
/// are recorded whenever they changed (``ReclaimState/pagesGeneration``), before an unmap
/// forgets them, and taken back when its backends are opened again: so a remap or a restart
/// keeps the `max_bytes` cap, `run unmerge` and the refault record whole. Backends whose QEMU
/// is gone are forgotten (their memory went with it).
final class PunchRecords {
    private let file: PunchLedgerFile?
    private let logger: Logger
    private(set) var ledger: PunchLedger
    private var saved: PunchLedger
    private var lastSave = ContinuousClock.now
    /// The generation of each guest's pages last recorded.
    private var recorded: [ObjectIdentifier: Int] = [:]
    /// Start times of the QEMUs whose backends are recorded.
    private var processStarts: [pid_t: UInt64] = [:]

    /// How often the ledger is written while it changes, and gone QEMUs looked for.
    static let saveInterval: Duration = .seconds(5)

    /// Reads the ledger kept in `file` (none: nothing is kept across restarts), forgetting the
    /// backends of QEMUs that are gone. An unreadable file is set aside, and said.
    init(file: PunchLedgerFile?, logger: Logger) {
        self.file = file
        self.logger = logger
        var ledger = PunchLedger()
        if let file {
            do { ledger = try file.load() } catch {
                let aside = file.setAside()
                logger.error(
                    "\(error): what samepaged punched before this start is not known (the max_bytes cap and run unmerge cover new holes only)\(aside.map { "; set aside as \($0)" } ?? "")")
            }
        }
        self.ledger = ledger
        saved = ledger
        forgetGone()
    }

    /// Pages held over every backend recorded: the holes the `max_bytes` cap counts.
    var heldPages: Int { ledger.heldPages }

    /// Takes back what the ledger holds of the guest's newly opened backends.
    func restore(_ guest: TrackedGuest) {
        var restored = 0
        for (index, region) in guest.regions.enumerated() {
            guard let backend = backend(of: region) else { continue }
            let pages = ledger.pages(of: backend, in: Self.window(of: region))
            if !pages.held.isEmpty {
                var set = PageSet(pageCount: region.pageCount)
                for range in pages.held.ranges { set.insert(range) }
                guest.reclaimState.held[index] = set
                restored += set.count
            }
            if !pages.hot.isEmpty {
                var set = PageSet(pageCount: region.pageCount)
                for range in pages.hot.ranges { set.insert(range) }
                guest.reclaimState.hot[index] = set
            }
        }
        recorded[ObjectIdentifier(guest)] = guest.reclaimState.pagesGeneration
        if restored > 0 {
            logger.info("guest \(guest.identity.name): \(restored) pages punched earlier are still counted as reclaimed")
        }
    }

    /// Records what each mapped guest's backends hold, where it changed since last recorded.
    func record(_ guests: some Sequence<TrackedGuest>) {
        for guest in guests { record(guest) }
    }

    /// Records what the guest's backends hold, if it changed; before an unmap forgets it.
    func record(_ guest: TrackedGuest) {
        let generation = guest.reclaimState.pagesGeneration
        guard !guest.regions.isEmpty, recorded[ObjectIdentifier(guest)] != generation else { return }
        for (index, region) in guest.regions.enumerated() {
            guard let backend = backend(of: region) else { continue }
            let pages = PunchLedger.Pages(
                held: PageRanges(guest.reclaimState.held[index]?.ranges ?? []),
                hot: PageRanges(guest.reclaimState.hot[index]?.ranges ?? []))
            ledger.record(pages, of: backend, in: Self.window(of: region))
        }
        recorded[ObjectIdentifier(guest)] = generation
    }

    /// A guest that leaves the table: its recorded generation is dropped (its backends stay
    /// recorded while its QEMU lives).
    func forget(_ guest: TrackedGuest) { recorded[ObjectIdentifier(guest)] = nil }

    /// Every ``saveInterval``: forgets the backends of QEMUs that are gone and writes the
    /// ledger if it changed. `force` writes now (at stop).
    func saveIfDue(at now: ContinuousClock.Instant, force: Bool = false) {
        guard force || now - lastSave >= Self.saveInterval else { return }
        lastSave = now
        forgetGone()
        guard let file, ledger != saved else { return }
        do {
            try file.save(ledger)
            saved = ledger
        } catch {
            logger.error("\(error): the holes punched since the last save would be forgotten by a restart")
        }
    }

    /// The window of file pages a region maps.
    static func window(of region: GuestRegion) -> Range<Int> {
        let first = region.fileOffset / pageSize
        return first..<(first + region.pageCount)
    }

    private func backend(of region: GuestRegion) -> PunchLedger.Backend? {
        guard let start = processStart(region.pid) else { return nil }
        return PunchLedger.Backend(
            deviceMajor: region.file.deviceMajor, deviceMinor: region.file.deviceMinor, inode: region.file.inode,
            pid: region.pid, processStart: start)
    }

    private func processStart(_ pid: pid_t) -> UInt64? {
        if let start = processStarts[pid] { return start }
        guard let start = try? QEMUGuestHandle.startTime(of: pid) else { return nil }
        processStarts[pid] = start
        return start
    }

    /// Forgets backends whose QEMU exited (or whose pid is another process's now). A stat that
    /// cannot be read for another reason keeps the backend: gone is not known.
    private func forgetGone() {
        let forgotten = ledger.forget { backend in
            do { return try QEMUGuestHandle.startTime(of: backend.pid) != backend.processStart } catch { return false }
        }
        // Read again when next needed: a pid may be another process's by then.
        processStarts = [:]
        if forgotten > 0 { logger.debug("punch ledger: forgot \(forgotten) backend(s) of QEMUs that exited") }
    }
}

import ArgumentParser
import Foundation
import Logging
import SamepageAgent
import SamepageControl
import SamepageCore
import SamepageModel

/// `samepage guests`: finds the host's guests through libvirt, maps their shared-memory RAM,
/// scans it, and prints what it found. Runs the agent in this process, no daemon needed.
struct GuestsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "guests",
        abstract: "Discover libvirt guests, map their RAM (shared or private), scan it and report.",
        discussion: """
            Every running guest is listed: mapped, or why not (an ambiguous private mapping, \
            a remote URI, no permission, QEMU gone). Guests with private RAM are accounted \
            too: read in QEMU's address space (the kernel's KSM is what merges them). Mapped guests are scanned for --passes full \
            scans with the given mode and trust group, then their counters are printed. Guest \
            memory is only read (pread over resident pages): nothing is paused or changed in \
            any mode (zero pages are counted, never reclaimed) and no pause journal is read or \
            written, so it is safe beside a running samepaged.
            """
    )

    @Option(name: .customLong("connect"), help: "libvirt URI.")
    var uri = HostDefaults.libvirtURI

    @Option(help: "Full scans before reporting (0: list only).")
    var passes = 2

    @Option(help: "How guests are scanned: report (accounted, the default), zero (zero pages only), merge.")
    var mode: PolicyMode = .report

    @Option(help: "Trust group for all guests; without one, each guest only shares within itself.")
    var trustGroup: String?

    @Option(help: "Give up after this many seconds.")
    var timeout = 300

    @Flag(help: "Print JSON computed here, no daemon: {\"stats\": …, \"guests\": […]}, the objects 'stats --json' and 'list --json' print.")
    var json = false

    @Flag(help: "Log what the agent does on standard error.")
    var verbose = false

    func validate() throws {
        guard passes >= 0 else { throw ValidationError("--passes must be 0 or more") }
        guard mode != .off else { throw ValidationError("--mode off would read nothing") }
    }

    func run() throws {
        var logger = Logger(label: "samepage")
        logger.logLevel = verbose ? .info : .critical
        var configuration = AgentConfiguration()
        configuration.uri = uri
        configuration.tunables = Tunables(pagesToScan: 20_000, sleepMillisecs: 0, smartScan: false)
        // Read-only: no journal means no reclaim, no pause and no replay of the daemon's journal.
        configuration.pauseJournal = nil
        let policy = GuestPolicy(mode: mode, trustGroup: trustGroup)
        configuration.policy = { _, _ in policy }
        let agent = Agent(configuration: configuration, logger: logger)
        agent.start()
        defer { agent.stop() }

        let deadline = Date().addingTimeInterval(TimeInterval(timeout))
        var snapshot = agent.snapshot
        while Date() < deadline {
            Thread.sleep(forTimeInterval: 0.1)
            snapshot = agent.snapshot
            if let error = snapshot.connectionError, !snapshot.connected {
                throw Failure(error)
            }
            guard snapshot.connected, snapshot.updatedOnce else { continue }
            let mapped = snapshot.guests.filter(\.mapped)
            if mapped.allSatisfy({ $0.counters.fullScans >= passes }) { break }
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            // The daemon's wire forms: `stats` and `list` as `samepage stats --json` and
            // `samepage list --json` print them.
            struct Listing: Encodable { var stats: DaemonStats; var guests: [GuestStatus] }
            print(String(decoding: try encoder.encode(Listing(stats: DaemonStats(snapshot), guests: snapshot.guests)), as: UTF8.self))
        } else {
            print(GuestTable(snapshot).text)
        }
    }
}

extension PolicyMode: ExpressibleByArgument {}

/// The human-readable listing of guests and counters.
struct GuestTable {
    let snapshot: AgentSnapshot
    init(_ snapshot: AgentSnapshot) { self.snapshot = snapshot }

    var text: String {
        ([guestTable(snapshot.guests), ""] + counterLines(snapshot.counters)).joined(separator: "\n")
    }
}

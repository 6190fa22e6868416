import ArgumentParser
import Foundation
import SamepageConfig
import SamepageControl
import SamepageCore
import SamepageModel

/// Sends one request to samepaged and returns its result; a daemon that is not running, a
/// refused socket or a failed request become a one-line ``Failure``.
func ask(_ socket: String, _ request: ControlRequest) throws -> ControlResult {
    do {
        let client = try ControlClient(path: socket)
        return try client.send(request).get()
    } catch let error as ControlError {
        throw Failure(error.description)
    } catch let failure as ControlFailure {
        throw Failure(failure.message)
    }
}

/// Prints a result as JSON, with the counter names as keys.
func printJSON(_ result: ControlResult) {
    print(ControlCodec.json(result, pretty: true))
}

func counterLines(_ counters: Counters, indent: String = "") -> [String] {
    counters.named.map { "\(indent)\($0.0.padding(toLength: 16, withPad: " ", startingAt: 0)) \($0.1)" }
}

func reclaimLines(_ r: ReclaimStatus) -> [String] {
    func buckets(_ counts: [Int]) -> String {
        zip(ReclaimStatus.histogramBoundsMs, counts)
            .map { "\($0.isInfinite ? "+Inf" : String(format: "%g", $0)):\($1)" }.joined(separator: " ")
    }
    return [
        "zero_pages_reclaimed \(r.zeroPagesReclaimed)", "bytes_reclaimed  \(r.bytesReclaimed)",
        "zero_pages_refaulted \(r.zeroPagesRefaulted)", "pages_held       \(r.pagesHeld)",
        "pauses           \(r.pauses) (\(String(format: "%.1f", r.pauseMillisecondsTotal)) ms, \(r.pauseOverruns) over budget)",
        "pause_ms         \(buckets(r.pauseHistogram))",
        "guest_seen       \(r.guestSeenPauses) (\(String(format: "%.1f", r.guestSeenPauseMillisecondsTotal)) ms, \(r.guestSeenOverruns) over budget)",
        "guest_seen_ms    \(buckets(r.guestSeenPauseHistogram))",
        "pauses_stopped_early \(r.pausesStoppedEarly)",
        "deferrals        cpu_pressure \(r.deferralsForCPUPressure), pause_cost \(r.deferralsForPauseCost), monitor_busy \(r.deferralsForMonitorBusy)",
    ] + (r.deferred.map { ["DEFERRED         \($0.reason.rawValue): \($0.detail)"] } ?? [])
        + (r.resumeFailure.map { ["RESUME FAILING   \($0) (retried with backoff)"] } ?? [])
}

/// `--json`, shared by every command that prints an answer.
struct OutputOptions: ParsableArguments {
    @Flag(help: "Print JSON: the daemon's wire form of the answer (the kernel's counter names as keys).")
    var json = false

    /// Sends `request` (see ``ask(_:_:)``); with `--json` prints the answer and returns nil,
    /// otherwise returns it for the command to print in words.
    func answer(_ socket: String, _ request: ControlRequest) throws -> ControlResult? {
        let result = try ask(socket, request)
        if json {
            printJSON(result)
            return nil
        }
        return result
    }
}

/// The guest listing of `list` and `samepage guests`: one row per guest, then why each guest
/// that is not mapped is not.
func guestTable(_ guests: [GuestStatus]) -> String {
    // What each guest saves, in bytes, first; the kernel-named counters below.
    var lines = guests.map { "\($0.name): \(Savings($0).summary)" }
    if guests.count > 1 { lines.append("total: \(guests.map { Savings($0) }.reduce(.zero, +).summary)") }
    if !guests.isEmpty { lines.append("") }
    lines.append(table(
        ["Name", "UUID", "Source", "State", "Backend", "Mapped", "Mode", "Group", "Scanned", "Shared", "Sharing", "Zero", "Reclaimed"],
        guests.map { g in
            [g.name, g.uuid, g.vmid.map { "\(g.source) \($0)" } ?? g.source.rawValue, g.state, g.backend ?? g.facts.backing, g.mapped ? "yes" : "no", g.mode.rawValue,
             g.trustGroup ?? "-", "\(g.counters.pagesScanned)", "\(g.counters.pagesShared)",
             "\(g.counters.pagesSharing)", "\(g.counters.zeroPages)", "\(g.reclaim.zeroPagesReclaimed)"]
        }))
    for g in guests {
        if let reason = g.reason { lines.append("\(g.name): not mapped: \(reason)") }
        if let deferred = g.reclaim.deferred { lines.append("\(g.name): reclaim deferred: \(deferred.detail)") }
    }
    return lines.joined(separator: "\n")
}

func table(_ header: [String], _ rows: [[String]]) -> String {
    let widths = header.indices.map { i in ([header] + rows).map { $0[i].count }.max()! }
    func format(_ row: [String]) -> String {
        zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
            .trimmingCharacters(in: .whitespaces)
    }
    let rule = String(repeating: "-", count: widths.reduce(0, +) + 2 * (widths.count - 1))
    return ([format(header), rule] + rows.map(format)).joined(separator: "\n")
}

struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List guests: state, backend, mapped or why not, policy, counters.")

    @ParentCommand var root: SamepageCommand
    @OptionGroup var output: OutputOptions

    func run() throws {
        guard case .guests(let guests) = try output.answer(root.socket, .list) else { return }
        print(guestTable(guests))
        printIgnoredProcesses(root.socket)
    }
}

struct DominfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dominfo", abstract: "Show one guest: backends, facts, policy, counters.")

    @ParentCommand var root: SamepageCommand
    @Argument(help: "Guest name or UUID.") var guest: String
    @OptionGroup var output: OutputOptions

    func run() throws {
        guard case .guest(let g) = try output.answer(root.socket, .dominfo(guest: guest)) else { return }
        var lines = [
            "Name:            \(g.name)", "UUID:            \(g.uuid)",
            "Source:          \(g.source)\(g.vmid.map { " (VMID \($0))" } ?? "")", "Saves:           \(Savings(g).summary)",
            "State:           \(g.state)",
            "Mapped:          \(g.mapped ? "yes" : "no, \(g.reason ?? "")")",
            "Mode:            \(g.mode.rawValue)", "Trust group:     \(g.trustGroup ?? "(its own)")",
            "Backing:         \(g.facts.backing)\(g.facts.access.map { ", \($0)" } ?? "")\(g.facts.hugepages ? ", hugepages" : "")",
        ]
        for region in g.regions {
            lines.append("Region:          \(region.backend): \(region.kind), \(region.bytes >> 20) MiB\(region.path.map { ", \($0)" } ?? "")")
        }
        let facts = g.facts
        func list(_ items: [String]) -> String { items.isEmpty ? "none" : items.joined(separator: ", ") }
        lines += [
            "Preallocated:    \(facts.preallocated ? "yes" : "no")", "Locked:          \(facts.locked ? "yes" : "no")",
            "Assigned devs:   \(list(facts.assignedDevices))", "ivshmem:         \(list(facts.ivshmem))",
            "Persistent mem:  \(list(facts.persistentMemory))", "Launch security: \(facts.launchSecurity ?? "none")",
            "vhost-user:      \(list(facts.vhostUser))",
            "vhost-user maps: \(list(facts.vhostUserBackends.map { "\($0.command) (\($0.pid)) on \($0.socket ?? "?")" }))",
            "Other mappers:   \(list(facts.otherMappers.map { "\($0.command) (\($0.pid))" }))",
            "Active job:      \(facts.activeJob ? "yes" : "no")",
            "DMA descriptors: \(list(facts.dmaDescriptors))",
            "Kernel KSM:      \(g.kernelKSM.map(kernelLine) ?? "nothing known")",
            "Reclaim:         \(g.reclaim.eligible ? "eligible" : "not eligible: \(g.reclaim.reason ?? "")")"
                + (g.reclaim.deferred.map { ", deferred: \($0.detail)" } ?? ""),
        ]
        print(lines.joined(separator: "\n"))
        print(counterLines(g.counters).joined(separator: "\n"))
        print(reclaimLines(g.reclaim).joined(separator: "\n"))
    }
}

/// What the kernel's KSM does with a guest, for `dominfo`.
func kernelLine(_ k: GuestKernelKSM) -> String {
    let mergeable = k.mergeable.map { $0 ? "mergeable" : "not mergeable\(k.refused.map { " (\($0))" } ?? "")" } ?? "not governed by samepaged"
    return "\(mergeable); ksm_merging_pages \(k.mergingPages.map(String.init) ?? "-"), ksm_zero_pages \(k.zeroPages.map(String.init) ?? "-"), ksm_process_profit \(k.processProfit.map(String.init) ?? "-")"
}

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats", abstract: "Show the global counters (the kernel's names), run mode and tunables.")

    @ParentCommand var root: SamepageCommand
    @OptionGroup var output: OutputOptions

    func run() throws {
        guard case .stats(let s) = try output.answer(root.socket, .stats) else { return }
        var lines = ["saves            \(s.savings.summary)"] + counterLines(s.counters)
        let fullScan = s.lastFullScan.map {
            String(format: "%.1f s at %.1f%% CPU", $0.seconds, $0.cpuPercent)
        } ?? "none completed yet"
        lines += ["run              \(s.run.rawValue)"] + tunableLines(s.tunables) + [
            "full_scan        \(fullScan)",
            "tracking_bytes   \(s.trackingBytes)",
            "scan_rate        \(Int(s.scanRate.rounded())) pages/s",
            "guests           \(s.guests) (\(s.guestsMapped) mapped)",
            "libvirt          \(!s.libvirtConfigured ? "off (libvirt.uri = \"\")" : s.connected ? "connected" : "disconnected: \(s.connectionError ?? "")")",
        ] + reclaimLines(s.reclaim)
        print(lines.joined(separator: "\n"))
    }
}

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Stop scanning, scan and merge, or unmerge everything (run 0/1/2).")

    @ParentCommand var root: SamepageCommand
    @Argument(help: "stop, merge or unmerge.") var mode: RunMode

    @Flag(help: "With unmerge: return at once instead of showing progress until reclaimed memory is allocated again.")
    var noWait = false

    func run() throws {
        _ = try ask(root.socket, .run(mode))
        print("run: \(mode.name)")
        guard mode == .unmerge, !noWait else { return }
        // Reclaimed ranges are allocated again in the background; follow it.
        let deadline = Date().addingTimeInterval(600)
        var last = -1
        while Date() < deadline {
            guard case .stats(let stats) = try ask(root.socket, .stats) else { return }
            let left = stats.reclaim.pagesHeld
            if left == 0 {
                print("reclaimed memory allocated again")
                return
            }
            if left != last { print("repopulating: \(left) pages left") }
            last = left
            Thread.sleep(forTimeInterval: 0.5)
        }
        throw Failure("repopulating did not finish in 10 minutes; see 'samepage stats'")
    }
}

/// The tunables under their kernel names, one a line, as `stats` and `tune` show them.
func tunableLines(_ t: Tunables) -> [String] {
    let advised = t.advisorMode == .scanTime ? " (set by the advisor)" : ""
    return [
        "pages_to_scan    \(t.pagesToScan)\(advised)", "sleep_millisecs  \(t.sleepMillisecs)",
        "max_kernel_pages \(t.maxKernelPages)", "max_page_sharing \(t.maxPageSharing)",
        "smart_scan       \(t.smartScan ? 1 : 0)",
        "advisor_mode     \(t.advisorMode.name)",
        "advisor_target_scan_time  \(t.advisorTargetScanTime) s",
        "advisor_max_cpu           \(t.advisorMaxCPU)%",
        "advisor_min_pages_to_scan \(t.advisorMinPagesToScan)",
        "advisor_max_pages_to_scan \(t.advisorMaxPagesToScan)",
    ]
}

struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "Show, validate and reload per-guest policies.",
        subcommands: [Show.self, Validate.self, Reload.self])

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The policy in force for each guest, and its file.")
        @ParentCommand var policy: PolicyCommand
        @Argument(help: "Guest name or UUID; all guests without one.") var guest: String?
        @OptionGroup var output: OutputOptions

        func run() throws {
            guard case .policies(let policies) = try output.answer(policy.root.socket, .policyShow(guest: guest)) else { return }
            print(table(
                ["Name", "Mode", "Group", "Max pages", "Pause ms", "Pause ms/min", "Source"],
                policies.map { p in
                    [p.name, p.policy.mode.rawValue, p.policy.trustGroup ?? "-", "\(p.policy.maxPages)",
                     "\(p.policy.maxPauseMs)", "\(p.policy.maxPauseMsPerMinute)", p.source ?? "(built-in default)"]
                }))
        }
    }

    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check policy files without the daemon; prints each problem as FILE:LINE: message.")
        @Argument(help: "Policy files.") var files: [String]

        func run() throws {
            var problems = 0
            for file in files {
                let errors = PolicyFile.validate(path: file)
                problems += errors.count
                for error in errors { print(error.description) }
                if errors.isEmpty { print("\(file): ok") }
            }
            if problems > 0 { throw ExitCode.failure }
        }
    }

    struct Reload: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make samepaged re-read the policy directory; a bad file is rejected and its guest keeps its last good policy.")
        @ParentCommand var policy: PolicyCommand
        @OptionGroup var output: OutputOptions

        func run() throws {
            guard case .policyReload(let report) = try output.answer(policy.root.socket, .policyReload) else { return }
            if report.errors.isEmpty {
                print("policies reloaded")
            } else {
                for error in report.errors { print(error) }
                throw ExitCode.failure
            }
        }
    }

    @ParentCommand var root: SamepageCommand
}

struct SharingCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sharing", abstract: "Matrix of merged contents shared between each pair of guests.")

    @ParentCommand var root: SamepageCommand
    @OptionGroup var output: OutputOptions

    func run() throws {
        guard case .sharing(let matrix) = try output.answer(root.socket, .sharing) else { return }
        let names = matrix.guests.map(\.name)
        print(table([""] + names, zip(names, matrix.pages).map { [$0] + $1.map(String.init) }))
    }
}

/// `samepage tune --advisor-mode none|scan-time`: the kernel's names.
extension AdvisorMode: ExpressibleByArgument {
    public var defaultValueDescription: String { name }
    public static var allValueStrings: [String] { allCases.map(\.name) }
    public static var defaultCompletionKind: CompletionKind { .list(allValueStrings) }
}

/// `samepage run stop|merge|unmerge`: the run modes by their names (not the kernel's numbers).
extension RunMode: ExpressibleByArgument {
    public init?(argument: String) { self.init(name: argument) }
    public var defaultValueDescription: String { name }
    public static var allValueStrings: [String] { allCases.map(\.name) }
    public static var allValueDescriptions: [String: String] { [:] }
    public static var defaultCompletionKind: CompletionKind { .list(allValueStrings) }
}

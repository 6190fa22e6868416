import ArgumentParser
import Foundation
import SamepageCLI
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

/// The kernel-named counters, aligned with a `saves` line above them, as `stats`, `dominfo`
/// and `guests` print them.
func counterLines(_ counters: Counters, indent: String = "") -> [String] {
    StatsText.counters(counters).lines(indent: indent, minimumWidth: StatsText.savingsKeyWidth)
}

/// Sends `request` (see ``ask(_:_:)``); with `json` prints the answer and returns nil,
/// otherwise returns it for the command to print in words.
func answer(_ socket: String, _ request: ControlRequest, json: Bool) throws -> ControlResult? {
    let result = try ask(socket, request)
    if json {
        printJSON(result)
        return nil
    }
    return result
}

/// The guest listing of `list` and `samepage guests`: one row per guest, then why each guest
/// that is not mapped is not.
func guestTable(_ guests: [GuestStatus], showsUUID: Bool = false) -> String {
    // What each guest saves, in bytes, first; the kernel-named counters below.
    var lines = guests.map { "\($0.name): \(Savings($0).summary)" }
    if guests.count > 1 { lines.append("total: \(Savings.host(guests, agent: nil).summary)") }
    if !guests.isEmpty { lines.append("") }
    lines.append(GuestListTable(guests, showsUUID: showsUUID).text)
    return lines.joined(separator: "\n")
}

struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List guests: where found, state, policy, RAM and what sharing, zero pages and reclaim come to.",
        discussion: "Sizes are in binary units (KiB, MiB, GiB). The UUID is shown with --uuid and by dominfo; the backend and the page counters by dominfo and --json.")

    @ParentCommand var root: SamepageCommand
    @Flag(help: "Show each guest's UUID (36 more columns).") var uuid = false
    @Flag(help: "Print the daemon's answer as JSON: an array of guest objects, the kernel's counter names as keys.")
    var json = false

    func run() throws {
        guard case .guests(let guests) = try answer(root.socketPath(), .list, json: json) else { return }
        print(guestTable(guests, showsUUID: uuid))
        if !json { printIgnoredProcesses(try root.socketPath()) }
    }
}

struct DominfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dominfo", abstract: "Show one guest: backends, facts, policy, counters.")

    @ParentCommand var root: SamepageCommand
    @Argument(help: "Guest name or UUID.", completion: guestNameCompletion) var guest: String
    @Flag(help: "Print the daemon's answer as JSON: one guest object, the kernel's counter names as keys.")
    var json = false

    func run() throws {
        guard case .guest(let g) = try answer(root.socketPath(), .dominfo(guest: guest), json: json) else { return }
        var lines = [
            "Name:            \(g.name)", "UUID:            \(g.uuid)",
            "Source:          \(g.source)\(g.vmid.map { " (VMID \($0))" } ?? "")", "Saves:           \(Savings(g).summary)",
            "State:           \(g.state)",
            "Mapped:          \(g.mapped ? "yes" : "no, \(g.reason ?? "")")",
            "Mode:            \(g.mode.rawValue)", "Trust group:     \(g.trustGroup ?? "(its own)")",
            "Backing:         \(g.facts.backing)\(g.facts.access.map { ", \($0)" } ?? "")\(g.facts.hugepages ? ", hugepages" : "")",
        ]
        for region in g.regions {
            lines.append("Region:          \(region.backend): \(region.kind), \(bytesText(region.bytes))\(region.path.map { ", \($0)" } ?? "")")
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
        print(StatsText.reclaim(g.reclaim).lines().joined(separator: "\n"))
        // What each mode would free now (as `samepage advise GUEST`).
        print("Advice:")
        print(AdviceText.lines(GuestAdvice(g)).joined(separator: "\n"))
    }
}

/// What the kernel's KSM does with a guest, for `dominfo`.
func kernelLine(_ k: GuestKernelKSM) -> String {
    let mergeable = k.mergeable.map { $0 ? "mergeable" : "not mergeable\(k.refused.map { " (\($0))" } ?? "")" } ?? "not governed by samepaged"
    return "\(mergeable); ksm_merging_pages \(k.mergingPages.map(String.init) ?? "-"), ksm_zero_pages \(k.zeroPages.map(String.init) ?? "-"), ksm_process_profit \(k.processProfit.map(String.init) ?? "-")"
}

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Show what the guests save, the global counters (the kernel's names), run mode, tunables and reclaim.",
        discussion: "Pause lengths are shown as percentiles read from the histogram's buckets: 'p90 ≤ 10 ms' says at least 90% of the pauses took at most 10 ms (an upper bound, not a measurement).")

    @ParentCommand var root: SamepageCommand
    @Flag(help: "Print the daemon's answer as JSON: one flat object, the kernel's counter and knob names as keys, reclaim nested.")
    var json = false

    func run() throws {
        guard case .stats(let s) = try answer(root.socketPath(), .stats, json: json) else { return }
        var lines = ["saves            \(s.savings.summary)"] + counterLines(s.counters)
        lines += [""] + StatsText.lines(s)
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
        _ = try ask(root.socketPath(), .run(mode))
        print("run: \(mode.name)")
        guard mode == .unmerge, !noWait else { return }
        // Reclaimed ranges are allocated again in the background; follow it.
        let deadline = Date().addingTimeInterval(600)
        var last = -1
        while Date() < deadline {
            guard case .stats(let stats) = try ask(root.socketPath(), .stats) else { return }
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
func tunableLines(_ t: Tunables) -> [String] { StatsText.tunables(t).lines() }

struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "Show, validate and reload per-guest policies.",
        subcommands: [Show.self, Validate.self, Reload.self])

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The policy in force for each guest, and its file.")
        @ParentCommand var policy: PolicyCommand
        @Argument(help: "Guest name or UUID; all guests without one.", completion: guestNameCompletion) var guest: String?
        @Flag(help: "Print the daemon's answer as JSON: one object per guest, its policy and the file it comes from.")
        var json = false

        func run() throws {
            guard case .policies(let policies) = try answer(policy.root.socketPath(), .policyShow(guest: guest), json: json)
            else { return }
            let columns: [TextTable.Column] = [
                .init("Name"), .init("Mode"), .init("Group"), .init("Max pages", .right), .init("Pause ms", .right),
                .init("Pause ms/min", .right), .init("Source"),
            ]
            print(TextTable(columns: columns, rows: policies.map { p in
                [p.name, p.policy.mode.rawValue, p.policy.trustGroup ?? "-", "\(p.policy.maxPages)",
                 "\(p.policy.maxPauseMs)", "\(p.policy.maxPauseMsPerMinute)", p.source ?? "(built-in default)"]
            }).text)
        }
    }

    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check policy files, or samepaged's configuration file, without the daemon; prints each problem as FILE:LINE: message.",
            discussion: """
                A file named samepaged.toml, or with one of its sections ([libvirt], [control], \
                [metrics], [scan], [policy], [reclaim], [qemu], [kernel_ksm]), is checked as \
                samepaged's configuration; any other as a per-guest policy file. --as says which. \
                'samepaged --check-config' checks the configuration and every policy file it leads to.
                """)

        /// How a file is taken.
        enum Kind: String, ExpressibleByArgument, CaseIterable {
            case auto, policy, daemon
        }

        @Option(name: .customLong("as"), help: ArgumentHelp(
            "auto (by name and sections), policy (a per-guest policy file) or daemon (samepaged.toml).", valueName: "kind"))
        var kind: Kind = .auto
        @Argument(help: "Policy files or samepaged's configuration file.", completion: .file(extensions: ["toml"])) var files: [String]

        func run() throws {
            var problems = 0
            for file in files {
                let kind: ConfigFileKind = switch self.kind {
                case .auto: ConfigFileKind.of(path: file)
                case .policy: .policy
                case .daemon: .daemon
                }
                let errors = kind.validate(path: file)
                problems += errors.count
                for error in errors { print(error.description) }
                print(errors.isEmpty ? "\(file): ok (\(kind.description))" : "\(file): invalid (checked as a \(kind.description))")
            }
            if problems > 0 { throw ExitCode.failure }
        }
    }

    struct Reload: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make samepaged re-read the policy directory; a bad file is rejected and its guest keeps its last good policy.")
        @ParentCommand var policy: PolicyCommand
        @Flag(help: "Print the daemon's answer as JSON: the errors of the files it rejected.")
        var json = false

        func run() throws {
            guard case .policyReload(let report) = try answer(policy.root.socketPath(), .policyReload, json: json) else { return }
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
        commandName: "sharing",
        abstract: "Matrix of stable nodes (merged contents) with pages in both guests of each pair.",
        discussion: "A cell counts stable nodes, not pages: a merged content with pages in both guests counts once. The diagonal counts each guest's own.")

    @ParentCommand var root: SamepageCommand
    @Flag(help: "Print the daemon's answer as JSON: guests, uuids, and the matrix under stable_nodes (and under pages, its former name).")
    var json = false

    func run() throws {
        guard case .sharing(let matrix) = try answer(root.socketPath(), .sharing, json: json) else { return }
        print(SharingTable(matrix).text)
    }
}

/// Guest names for the shell, asked of the daemon (nothing when it does not answer at once).
let guestNameCompletion = CompletionKind.custom { words, _, prefix in
    GuestNameCompletion.candidates(words: words, prefix: prefix, environment: ProcessInfo.processInfo.environment)
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

import ArgumentParser
import Foundation
import SamepageConfig
import SamepageControl
import SamepageCore
import SamepageModel

// `samepage tune`: the engine's tunables and, with `--kernel-…`, ksmd's settings under
// `[kernel_ksm]`'s names, with the argument types only it parses.

struct TuneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tune", abstract: "Change scan tunables live; with no option, show them.",
        discussion: """
            While advisor_mode is scan-time (samepaged's default), the advisor sets \
            pages_to_scan after every full scan: give --pages-to-scan together with \
            --advisor-mode none. Turning the advisor on starts it from \
            advisor_min_pages_to_scan; turning it off sets pages_to_scan to the one given, \
            or to 1000.
            """)

    @ParentCommand var root: SamepageCommand
    @Option(help: "Pages per batch (only with the advisor off: advisor_mode none).") var pagesToScan: Int?
    @Option(help: "Pause between batches.") var sleepMillisecs: Int?
    @Option(help: "Cap on stable nodes (0 = unlimited).") var maxKernelPages: Int?
    @Option(help: "Cap on pages per stable node (0 = unlimited, else at least 2).") var maxPageSharing: Int?
    @Option(help: "Who sets pages_to_scan: none (by hand) or scan-time (the advisor).") var advisorMode: AdvisorMode?
    @Option(help: "The advisor's target time for one full scan, in seconds.") var advisorTargetScanTime: Int?
    @Option(help: "The advisor's CPU cap, percent of one core (1 to 100).") var advisorMaxCpu: Int?
    @Option(help: "The pages_to_scan the advisor starts from.") var advisorMinPagesToScan: Int?
    @Option(help: "The advisor's cap on pages_to_scan.") var advisorMaxPagesToScan: Int?
    @OptionGroup(title: "The kernel's ksmd, while samepaged governs it ([kernel_ksm] enabled)") var kernel: KernelTuneOptions
    @Flag(help: "Print JSON: the tunables in force after the change as the daemon reports them (with --kernel-…: its kernel_ksm object).")
    var json = false

    func validate() throws {
        if !kernel.changes.isEmpty && !engineChanges.isEmpty {
            throw ValidationError("give samepaged's own knobs or --kernel-… knobs, not both, in one call")
        }
    }

    func run() throws {
        if !kernel.changes.isEmpty {
            guard case .kernelKSM(let status) = try answer(root.socketPath(), .ksmTune(kernel.changes), json: json) else { return }
            print(kernelKSMLines(status).joined(separator: "\n"))
            return
        }
        let changes = engineChanges
        let result = try ask(root.socketPath(), changes.isEmpty ? .stats : .tune(changes))
        let tunables: Tunables
        switch result {
        case .tunables(let t): tunables = t
        case .stats(let s): tunables = s.tunables
        default: return
        }
        if json { return printJSON(.tunables(tunables)) }
        print(tunableLines(tunables).joined(separator: "\n"))
    }

    private var engineChanges: TunableChanges {
        TunableChanges(
            pagesToScan: pagesToScan, sleepMillisecs: sleepMillisecs, maxKernelPages: maxKernelPages,
            maxPageSharing: maxPageSharing, advisorMode: advisorMode, advisorTargetScanTime: advisorTargetScanTime,
            advisorMaxCPU: advisorMaxCpu, advisorMinPagesToScan: advisorMinPagesToScan,
            advisorMaxPagesToScan: advisorMaxPagesToScan)
    }
}

/// `samepage tune --kernel-…`: ksmd's settings under `[kernel_ksm]`'s names.
struct KernelTuneOptions: ParsableArguments {
    @Option(name: .customLong("kernel-available-threshold-percent"),
            help: "ksmd runs while MemAvailable is below this share of MemTotal (1 to 100; 100 always runs).")
    var availableThresholdPercent: Int?
    @Option(name: .customLong("kernel-advisor-mode"), help: "Who sets ksmd's pages_to_scan: none (by hand) or scan-time (the kernel's advisor).")
    var advisorMode: AdvisorMode?
    @Option(name: .customLong("kernel-advisor-target-scan-time"), help: "The kernel advisor's target time for one full scan, in seconds.")
    var advisorTargetScanTime: Int?
    @Option(name: .customLong("kernel-advisor-max-cpu"), help: "The kernel advisor's cap on ksmd's CPU, percent (1 to 100).")
    var advisorMaxCpu: Int?
    @Option(name: .customLong("kernel-pages-to-scan"), help: "ksmd's pages per batch (only with --kernel-advisor-mode none).")
    var pagesToScan: Int?
    @Option(name: .customLong("kernel-sleep-millisecs"), help: "ksmd's pause between batches.")
    var sleepMillisecs: Int?
    @Option(name: .customLong("kernel-max-page-sharing"), help: "Cap on pages sharing one KSM page (at least 2; changes only while none is shared).")
    var maxPageSharing: Int?
    @Option(name: .customLong("kernel-use-zero-pages"), help: "Merge zero pages with the kernel's zero page: on or off.")
    var useZeroPages: Switch?
    @Option(name: .customLong("kernel-smart-scan"), help: "Skip pages that keep failing to merge: on or off.")
    var smartScan: Switch?

    var changes: KernelKSMChanges {
        KernelKSMChanges(
            availableThresholdPercent: availableThresholdPercent, advisorMode: advisorMode,
            advisorTargetScanTime: advisorTargetScanTime, advisorMaxCPU: advisorMaxCpu, pagesToScan: pagesToScan,
            sleepMillisecs: sleepMillisecs, maxPageSharing: maxPageSharing, useZeroPages: useZeroPages?.isOn,
            smartScan: smartScan?.isOn)
    }
}

/// An on/off option's value.
enum Switch: String, ExpressibleByArgument, CaseIterable {
    case on, off
    var isOn: Bool { self == .on }
}

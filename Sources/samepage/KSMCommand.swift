import ArgumentParser
import Foundation
import SamepageCore
import SamepageControl
import SamepageModel

/// `samepage ksm`: the kernel's own KSM as samepaged sees it.
struct KSMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ksm",
        abstract: "Show the kernel's own KSM (ksmd): whether samepaged governs it, why it runs or not, its counters.")

    @ParentCommand var root: SamepageCommand
    @Flag(help: "Print JSON: the kernel_ksm object of the daemon's stats answer (as in 'stats --json').")
    var json = false

    func run() throws {
        let result = try ask(root.socketPath(), .stats)
        guard case .stats(let stats) = result else { return }
        let k = stats.kernelKSM
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(k), as: UTF8.self))
            return
        }
        print(kernelKSMLines(k).joined(separator: "\n"))
    }
}

/// The kernel's KSM in words, as `samepage ksm` and `samepage tune --kernel-…` show it.
func kernelKSMLines(_ k: KernelKSMStatus) -> [String] {
    func value(_ number: Int?) -> String { number.map(String.init) ?? "-" }
    var lines = [
        "governed         \(k.governed ? "yes, [kernel_ksm] trust_group \(k.trustGroup.map { "\"\($0)\"" } ?? "(none: no guest is merged)")" : "no ([kernel_ksm] enabled = false)")",
        "run              \(k.run.flatMap(RunMode.init(rawValue:)).map { "\($0.name) (\($0.rawValue))" } ?? value(k.run))\(k.why.map { ": \($0)" } ?? "")",
    ]
    let merged = ((k.pagesSharing ?? 0) + (k.ksmZeroPages ?? 0)) * pageSize
    // Frames the kernel freed host-wide, every mergeable process included; `list` and `stats`
    // show what it merged of the guests, from each QEMU's ksm_stat (see Savings).
    lines.append("freed (host)     \(Savings.format(bytes: merged)) (pages_sharing + ksm_zero_pages, every process; the guests' ksm_stat in list)")
    for (name, number) in [
        ("pages_shared", k.pagesShared), ("pages_sharing", k.pagesSharing), ("pages_unshared", k.pagesUnshared),
        ("pages_volatile", k.pagesVolatile), ("full_scans", k.fullScans), ("ksm_zero_pages", k.ksmZeroPages),
        ("general_profit", k.generalProfit), ("pages_to_scan", k.pagesToScan), ("sleep_millisecs", k.sleepMillisecs),
    ] {
        lines.append("\(name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(value(number))")
    }
    lines.append("advisor_mode     \(k.advisorMode ?? "-")")
    lines += k.failures.map { "FAILED           \($0)" }
    if let c = k.configuration {
        lines.append("[kernel_ksm] in force:")
        for (name, setting) in [
            ("available_threshold_percent", "\(c.availableThresholdPercent)%"), ("advisor_mode", c.advisorMode.rawValue),
            ("advisor_target_scan_time", "\(c.advisorTargetScanTime) s"), ("advisor_max_cpu", "\(c.advisorMaxCPU)%"),
            ("pages_to_scan", "\(c.pagesToScan)"), ("sleep_millisecs", "\(c.sleepMillisecs)"),
            ("max_page_sharing", "\(c.maxPageSharing)"), ("use_zero_pages", c.useZeroPages ? "on" : "off"),
            ("smart_scan", c.smartScan ? "on" : "off"),
        ] {
            lines.append("  \(name.padding(toLength: 27, withPad: " ", startingAt: 0)) \(setting)")
        }
    }
    return lines
}

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
    @OptionGroup var output: OutputOptions

    func run() throws {
        let result = try ask(root.socket, .stats)
        guard case .stats(let stats) = result else { return }
        let k = stats.kernelKSM
        if output.json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(k), as: UTF8.self))
            return
        }
        func value(_ number: Int?) -> String { number.map(String.init) ?? "-" }
        var lines = [
            "governed         \(k.governed ? "yes, [kernel_ksm] trust_group \(k.trustGroup.map { "\"\($0)\"" } ?? "(none: no guest is merged)")" : "no ([kernel_ksm] enabled = false)")",
            "run              \(value(k.run))\(k.why.map { " (\($0))" } ?? "")",
        ]
        let merged = ((k.pagesSharing ?? 0) + (k.ksmZeroPages ?? 0)) * pageSize
        lines.append("merged           \(Savings.format(bytes: merged)) (pages_sharing + ksm_zero_pages)")
        for (name, number) in [
            ("pages_shared", k.pagesShared), ("pages_sharing", k.pagesSharing), ("pages_unshared", k.pagesUnshared),
            ("pages_volatile", k.pagesVolatile), ("full_scans", k.fullScans), ("ksm_zero_pages", k.ksmZeroPages),
            ("general_profit", k.generalProfit), ("pages_to_scan", k.pagesToScan), ("sleep_millisecs", k.sleepMillisecs),
        ] {
            lines.append("\(name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(value(number))")
        }
        lines.append("advisor_mode     \(k.advisorMode ?? "-")")
        lines += k.failures.map { "FAILED           \($0)" }
        print(lines.joined(separator: "\n"))
    }
}

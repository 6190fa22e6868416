import ArgumentParser
import Foundation

/// `samepage`: the operator's command line for Samepage.
@main
struct SamepageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "samepage",
        abstract: "Kernel Samepage Merging for QEMU guests with shared-memory RAM.",
        subcommands: [ScanCommand.self, GuestsCommand.self]
    )

    static func main() { mainReportingFailures() }
}

/// A command that failed for a reason the user can act on: printed as `samepage: MESSAGE`
/// on standard error, exit status 1, without the usage text.
struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ message: String) { description = message }
}

extension ParsableCommand {
    /// Runs the command, turning ``Failure`` into a one-line message and exit status 1.
    static func mainReportingFailures() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let failure as Failure {
            FileHandle.standardError.write(Data("samepage: \(failure.description)\n".utf8))
            Foundation.exit(1)
        } catch {
            exit(withError: error)
        }
    }
}

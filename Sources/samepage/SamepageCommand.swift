import ArgumentParser
import Foundation
import SamepageControl
import SamepageModel

/// `samepage`: the operator's command line for Samepage, in the style of virsh.
@main
struct SamepageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "samepage",
        abstract: "Kernel Samepage Merging for QEMU guests with shared-memory RAM.",
        discussion: """
            Commands that read or change the daemon talk to samepaged over its control socket. \
            With no command, samepage opens an interactive shell. 'scan' and 'guests' run the \
            engine in this process and need no daemon.
            """,
        version: SamepageRelease.version,
        subcommands: [
            ListCommand.self, DominfoCommand.self, StatsCommand.self, RunCommand.self, TuneCommand.self,
            PolicyCommand.self, SharingCommand.self, ScanCommand.self, GuestsCommand.self, KSMCommand.self,
            AdviseCommand.self,
        ]
    )

    @Option(help: "samepaged's control socket.")
    var socket = HostDefaults.controlSocket

    static func main() { mainReportingFailures() }

    /// No command: the interactive shell.
    func run() throws {
        try InteractiveShell(socket: socket).run()
    }
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

/// virsh's interactive mode: one command a line, the same commands as on the command line.
struct InteractiveShell {
    let socket: String

    func run() throws {
        let interactive = isatty(0) != 0
        if interactive {
            print("Welcome to samepage, the interactive terminal for samepaged.\nType 'help' for commands, 'quit' to leave.\n")
        }
        while true {
            if interactive {
                print("samepage # ", terminator: "")
                fflush(nil)
            }
            guard let line = readLine() else { break }
            let words = Self.split(line)
            guard let first = words.first else { continue }
            if first == "quit" || first == "exit" { break }
            if first == "help" {
                print(SamepageCommand.helpMessage(for: SamepageCommand.self))
                continue
            }
            do {
                var command = try SamepageCommand.parseAsRoot(["--socket", socket] + words)
                if command is SamepageCommand { continue }  // no nested shells
                try command.run()
            } catch let failure as Failure {
                FileHandle.standardError.write(Data("error: \(failure.description)\n".utf8))
            } catch {
                let message = SamepageCommand.message(for: error)
                if !message.isEmpty { FileHandle.standardError.write(Data("\(message)\n".utf8)) }
            }
        }
    }

    /// Splits a line into words, honouring single and double quotes and backslashes.
    static func split(_ line: String) -> [String] {
        var words: [String] = []
        var current = ""
        var inWord = false
        var quote: Character?
        var escaped = false
        for c in line {
            if escaped {
                current.append(c)
                escaped = false
            } else if c == "\\" && quote != "'" {
                escaped = true
                inWord = true
            } else if let q = quote {
                if c == q { quote = nil } else { current.append(c) }
            } else if c == "'" || c == "\"" {
                quote = c
                inWord = true
            } else if c.isWhitespace {
                if inWord { words.append(current) }
                current = ""
                inWord = false
            } else {
                current.append(c)
                inWord = true
            }
        }
        if inWord { words.append(current) }
        return words
    }
}

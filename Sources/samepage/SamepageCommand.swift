import ArgumentParser
import Foundation
import SamepageCLI
import SamepageControl
import SamepageModel

/// `samepage`: the operator's command line for Samepage, in the style of virsh.
@main
struct SamepageCommand: ParsableCommand {
    // No `version:` here: swift-argument-parser would then offer --version on every
    // subcommand. The root's own flag below is the only one.
    static let configuration = CommandConfiguration(
        commandName: "samepage",
        abstract: "Kernel Samepage Merging for QEMU guests with shared-memory RAM.",
        discussion: """
            Commands that read or change the daemon talk to samepaged over its control socket: \
            --socket, else $SAMEPAGE_SOCKET, else control.socket in samepaged's configuration \
            file (--config, else $SAMEPAGE_CONFIG, else /etc/samepage/samepaged.toml), else \
            /run/samepage/samepaged.sock. With no command, samepage opens an interactive \
            shell. 'scan' and 'guests' run the engine in this process and need no daemon.
            """,
        subcommands: [
            ListCommand.self, DominfoCommand.self, StatsCommand.self, RunCommand.self, TuneCommand.self,
            PolicyCommand.self, SharingCommand.self, ScanCommand.self, GuestsCommand.self, KSMCommand.self,
            AdviseCommand.self,
        ]
    )

    @Option(help: ArgumentHelp(
        "samepaged's control socket.",
        discussion: "Default: $SAMEPAGE_SOCKET, else control.socket of the configuration file, else /run/samepage/samepaged.sock.",
        valueName: "path"))
    var socket: String?

    @Option(help: ArgumentHelp(
        "samepaged's configuration file, read for control.socket when neither --socket nor $SAMEPAGE_SOCKET is given.",
        discussion: "Default: $SAMEPAGE_CONFIG, else /etc/samepage/samepaged.toml (built-in defaults when that file is missing).",
        valueName: "path"))
    var config: String?

    @Flag(help: "Show samepage's version and exit.")
    var version = false

    static func main() { mainReportingFailures() }

    /// The control socket's path: `--socket`, `SAMEPAGE_SOCKET`, the configuration file's
    /// `control.socket`, the built-in default (``ControlSocketLocation``).
    func socketPath() throws -> String {
        do {
            return try ControlSocketLocation.resolve(
                socketOption: socket, configOption: config, environment: ProcessInfo.processInfo.environment
            ).path
        } catch {
            throw Failure("\(error) (reading control.socket; --socket or SAMEPAGE_SOCKET names the socket without the file)")
        }
    }

    /// No command: the version with `--version`, else the interactive shell.
    func run() throws {
        if version { return print(SamepageRelease.version) }
        try InteractiveShell(socket: try socketPath()).run()
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
            // The root's --version parses after a subcommand too; it means nothing there.
            if !(command is SamepageCommand), CommandLine.arguments.dropFirst().prefix(while: { $0 != "--" }).contains("--version") {
                throw Failure("--version is samepage's own option: samepage --version")
            }
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
                if let root = command as? SamepageCommand {
                    if root.version { print(SamepageRelease.version) }
                    continue  // no nested shells
                }
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

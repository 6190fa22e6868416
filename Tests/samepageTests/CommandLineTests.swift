import ArgumentParser
import Testing
@testable import samepage

/// The command line itself: which options each command offers and what its help says.
@Suite struct CommandLineTests {
    /// Every command under the root, nested ones included.
    static let subcommands: [any ParsableCommand.Type] = [
        ListCommand.self, DominfoCommand.self, StatsCommand.self, RunCommand.self, TuneCommand.self,
        PolicyCommand.self, PolicyCommand.Show.self, PolicyCommand.Validate.self, PolicyCommand.Reload.self,
        SharingCommand.self, ScanCommand.self, GuestsCommand.self, KSMCommand.self,
    ]

    @Test("--version is the root command's only")
    func version() throws {
        #expect(SamepageCommand.helpMessage().contains("--version"))
        for command in Self.subcommands {
            #expect(!SamepageCommand.helpMessage(for: command).contains("--version"), "\(command)")
        }
        let root = try #require(try SamepageCommand.parseAsRoot(["--version"]) as? SamepageCommand)
        #expect(root.version)
    }

    @Test("Each --json says what it prints; none but the daemon's commands speak of the daemon")
    func jsonHelp() {
        let daemonless: [any ParsableCommand.Type] = [ScanCommand.self, GuestsCommand.self]
        for command in daemonless {
            let help = SamepageCommand.helpMessage(for: command, columns: 1000)
            let json = help.split(separator: "\n").first { $0.contains("--json") && $0.contains("Print") }
            #expect(json?.contains("no daemon") == true, "\(command): \(json ?? "")")
            #expect(json?.contains("daemon's") == false, "\(command): \(json ?? "")")
        }
        #expect(SamepageCommand.helpMessage(for: SharingCommand.self, columns: 1000).contains("stable_nodes"))
        #expect(SamepageCommand.helpMessage(for: KSMCommand.self, columns: 1000).contains("kernel_ksm"))
    }

    @Test("guests' help says guests with private RAM are accounted")
    func guestsHelp() {
        let help = SamepageCommand.helpMessage(for: GuestsCommand.self, columns: 1000)
        #expect(help.contains("Guests with private RAM are accounted"))
        #expect(!help.contains("(anonymous or private RAM"))
    }

    @Test("list shows the UUID only when asked")
    func listUUID() throws {
        let plain = try #require(try SamepageCommand.parseAsRoot(["list"]) as? ListCommand)
        #expect(!plain.uuid)
        let wide = try #require(try SamepageCommand.parseAsRoot(["list", "--uuid"]) as? ListCommand)
        #expect(wide.uuid)
    }

    @Test("--socket, then the environment: an explicit socket is taken as given")
    func socket() throws {
        let list = try #require(try SamepageCommand.parseAsRoot(["--socket", "/srv/x.sock", "list"]) as? ListCommand)
        #expect(try list.root.socketPath() == "/srv/x.sock")
    }
}

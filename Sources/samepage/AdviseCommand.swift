import ArgumentParser
import SamepageControl
import SamepageModel

/// `samepage advise [GUEST]`: what each policy mode would free now, per guest, and what else
/// would (private RAM, whole zero huge pages, the balloon's free page reporting).
struct AdviseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "advise",
        abstract: "What each mode (off, report, zero, merge) would free now, and why or why not, per guest.")

    @ParentCommand var root: SamepageCommand
    @Argument(help: "Guest name or UUID; all guests without one.", completion: guestNameCompletion) var guest: String?
    @Flag(help: "Print the daemon's answer as JSON: an array of advice objects, one per guest.")
    var json = false

    func run() throws {
        guard case .advice(let advice) = try answer(root.socketPath(), .advise(guest: guest), json: json) else { return }
        print(advice.isEmpty ? "no guests" : AdviceText.render(advice))
    }
}

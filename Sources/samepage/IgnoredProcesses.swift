import SamepageControl
import SamepageModel

/// The trailing section of `list`: processes that look like a QEMU and are ignored, with why
/// (from `stats`; a daemon too old to report them, or one that does not answer, adds nothing).
func printIgnoredProcesses(_ socket: String) {
    guard case .stats(let stats)? = try? ask(socket, .stats) else { return }
    let lines = IgnoredProcess.listSection(stats.ignoredProcesses)
    if !lines.isEmpty { print(lines.joined(separator: "\n")) }
}

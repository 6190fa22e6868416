import Foundation
import Testing

@Suite("Shipped shell completions")
struct CompletionTests {
    @Test("config/completions/ is what samepage generates now", arguments: ["bash", "zsh", "fish"])
    func completionsAreCurrent(shell: String) throws {
        let generated = try TestHost.run(DaemonProcess.samepage, ["--generate-completion-script", shell])
        #expect(generated.status == 0)
        let shipped = try String(contentsOf: TestHost.root.appendingPathComponent("config/completions/samepage.\(shell)"), encoding: .utf8)
        #expect(generated.output == shipped, "regenerate with: samepage --generate-completion-script \(shell) > config/completions/samepage.\(shell)")
    }
}

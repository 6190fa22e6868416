import Foundation
import SamepageModel

extension MapperProcess {
    /// The command name of process `pid`: `/proc/PID/comm`, or "?" when it cannot be read
    /// (the process is gone, or hidden from us).
    static func command(of pid: Int32) -> String {
        (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
    }
}

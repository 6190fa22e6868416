import Foundation
import Glibc

/// A directory of its own under /tmp, removed with the value.
final class TemporaryDirectory {
    let path = "/tmp/samepage-qemuguests-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"

    init() { mkdir(path, 0o700) }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// Writes `text` to `NAME` in the directory (folders made as needed).
    func write(_ name: String, _ text: String) {
        let file = "\(path)/\(name)"
        try! FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try! text.write(toFile: file, atomically: false, encoding: .utf8)
    }

    func remove(_ name: String) { try? FileManager.default.removeItem(atPath: "\(path)/\(name)") }
}

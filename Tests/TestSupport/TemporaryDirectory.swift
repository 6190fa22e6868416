import Foundation

/// A fresh directory under the system's temporary directory, removed by `remove()`.
public struct TemporaryDirectory: Sendable {
    /// The directory's path.
    public let path: String

    /// Makes the directory (mkdtemp).
    public init() throws {
        var template = Array((NSTemporaryDirectory() + "/samepage-config-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw CocoaError(.fileWriteUnknown) }
        path = String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
    }

    /// The path of `name` in the directory.
    public func file(_ name: String) -> String { path + "/" + name }

    /// Writes `text` to the file `name`.
    public func write(_ name: String, _ text: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: file(name)))
    }

    /// Writes `bytes` to the file `name`.
    public func write(_ name: String, bytes: [UInt8]) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: file(name)))
    }

    /// Removes the file `name`.
    public func remove(_ name: String) throws {
        try FileManager.default.removeItem(atPath: file(name))
    }

    /// Removes the directory and all in it.
    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

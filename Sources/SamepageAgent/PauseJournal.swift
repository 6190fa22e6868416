#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A durable record of the guests the agent has paused, so that a pause never outlives the
/// agent: written (and synced) before a guest is suspended, cleared after it is resumed, and
/// replayed at start and by `samepaged --resume-paused`, which the service manager runs after
/// the daemon stops for any reason.
///
/// Only guests in this journal are ever resumed by Samepage: a guest paused by someone else
/// may be resumed by them at any moment, and is theirs to resume.
public struct PauseJournal: Sendable {
    /// One pause under way.
    public struct Entry: Codable, Sendable, Equatable {
        public var uuid: String
        public var name: String
        /// When the pause began (seconds since 1970).
        public var since: Double
    }

    public let path: String

    public init(path: String) { self.path = path }

    /// The pauses recorded and not cleared. A missing file is an empty journal; an unreadable
    /// or corrupt one throws, because forgetting a pause is worse than refusing to start.
    public func entries() throws -> [Entry] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        if data.isEmpty { return [] }
        return try JSONDecoder().decode([Entry].self, from: data)
    }

    /// Records a pause before it happens. Throws if it cannot be made durable: then the guest
    /// must not be paused.
    public func willPause(uuid: String, name: String) throws {
        var entries = try entries().filter { $0.uuid != uuid }
        entries.append(Entry(uuid: uuid, name: name, since: Date().timeIntervalSince1970))
        try write(entries)
    }

    /// Clears a pause once the guest runs again.
    public func didResume(uuid: String) throws {
        try write(try entries().filter { $0.uuid != uuid })
    }

    /// Replaces the file atomically and durably: a temporary file, fsync, rename, fsync of
    /// the directory.
    private func write(_ entries: [Entry]) throws {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let temporary = path + ".tmp"
        let data = try JSONEncoder().encode(entries)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw JournalError(operation: "open \(temporary)", errno: errno) }
        let written = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == data.count, synced == 0 else { throw JournalError(operation: "write \(temporary)", errno: errno) }
        guard rename(temporary, path) == 0 else { throw JournalError(operation: "rename \(temporary)", errno: errno) }
        let dirfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirfd >= 0 {
            fsync(dirfd)
            close(dirfd)
        }
    }
}

/// The pause journal could not be read or written.
public struct JournalError: Error, CustomStringConvertible {
    public var operation: String
    public var errno: Int32
    public var description: String { "\(operation): \(String(cString: strerror(errno)))" }
}

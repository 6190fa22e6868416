import Glibc
import Foundation
import Synchronization
import LinuxSystem
import SamepageModel

/// A durable record of the guests the agent has paused, so that a pause never outlives the
/// agent: written (and synced) before a guest is suspended, cleared after it is resumed, and
/// replayed at start and by `samepaged --resume-paused`, which the service manager runs after
/// the daemon stops for any reason.
///
/// Only guests in this journal are ever resumed by Samepage, and only when they are still in
/// the pause it made: the same QEMU run (domain id), paused by a client (`PAUSED_USER`). A
/// guest paused by someone else, or for another reason (an I/O error, a migration), is theirs.
///
/// The file is JSON, `{"format": 2, "pauses": [...]}` (3 while it holds a pause over QMP);
/// the first format, a bare array of entries, is still read. Anything else (corrupt, unreadable, an unknown format) throws:
/// forgetting a pause is worse than refusing to start.
public struct PauseJournal: Sendable {
    /// One pause under way.
    public struct Entry: Codable, Sendable, Equatable {
        public var uuid: String
        public var name: String
        /// When the pause began (seconds since 1970).
        public var since: Double
        /// How the guest was paused, and what tells the QEMU run that was paused from a later one.
        public var target: Target

        public init(uuid: String, name: String, since: Double, target: Target) {
            self.uuid = uuid
            self.name = name
            self.since = since
            self.target = target
        }

        enum CodingKeys: String, CodingKey {
            case uuid, name, since, qmp
            case domainID = "domain_id"
        }

        // The wire form stays that of formats 1 to 3: `domain_id` for libvirt's pauses, `qmp`
        // for pauses over QMP.
        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            uuid = try container.decode(String.self, forKey: .uuid)
            name = try container.decode(String.self, forKey: .name)
            since = try container.decode(Double.self, forKey: .since)
            if let qmp = try container.decodeIfPresent(QMPTarget.self, forKey: .qmp) {
                target = .qmp(qmp)
            } else {
                target = .libvirt(domainID: try container.decodeIfPresent(UInt32.self, forKey: .domainID))
            }
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(uuid, forKey: .uuid)
            try container.encode(name, forKey: .name)
            try container.encode(since, forKey: .since)
            switch target {
            case .libvirt(let domainID): try container.encodeIfPresent(domainID, forKey: .domainID)
            case .qmp(let qmp): try container.encode(qmp, forKey: .qmp)
            }
        }
    }

    /// How a journalled pause was made: the transport, and what identifies the QEMU run paused.
    public enum Target: Sendable, Equatable {
        /// libvirt's suspend; the domain id of the QEMU run (nil in entries of the first format).
        case libvirt(domainID: UInt32?)
        /// QEMU's `stop` over its QMP socket.
        case qmp(QMPTarget)
    }

    /// The QEMU of a pause made over QMP.
    public struct QMPTarget: Codable, Sendable, Equatable {
        /// Its QMP server socket.
        public var socket: String
        public var pid: Int32
        /// Field 22 of `/proc/PID/stat` when it was paused: a recycled pid has another.
        public var startTime: UInt64

        public init(socket: String, pid: Int32, startTime: UInt64) {
            self.socket = socket
            self.pid = pid
            self.startTime = startTime
        }

        enum CodingKeys: String, CodingKey {
            case socket, pid
            case startTime = "start_time"
        }
    }

    /// The format this build writes.
    public static let format = 2
    /// The format of a journal that holds a pause over QMP (an entry with `qmp`): a samepaged
    /// that knows only format 2 would take such an entry for a libvirt guest's and drop it,
    /// so it is told apart and refused loudly there. A journal of libvirt pauses stays format 2.
    public static let qmpFormat = 3

    /// Where the default journal lives; `--resume-paused` always replays it.
    public static let defaultPath = HostDefaults.pauseJournal

    /// The list of every other journal a samepaged has used on this host, next to the default
    /// journal, so that changing `reclaim.journal` in the configuration cannot hide a journal
    /// that still holds a pause from `--resume-paused`.
    public static let defaultIndexPath = HostDefaults.pauseJournalIndex

    public let path: String

    public init(path: String) { self.path = path }

    private struct File: Codable {
        var format: Int
        var pauses: [Entry]
    }

    /// The pauses recorded and not cleared. A missing or empty file is an empty journal.
    public func entries() throws(JournalError) -> [Entry] {
        let data: Data
        do {
            guard FileManager.default.fileExists(atPath: path) else { return [] }
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw JournalError(path: path, problem: "cannot be read: \(error.localizedDescription)")
        }
        if data.isEmpty { return [] }
        if let file = try? JSONDecoder().decode(File.self, from: data) {
            guard file.format == Self.format || file.format == Self.qmpFormat else {
                throw JournalError(path: path, problem: "has format \(file.format); this samepaged reads formats 1, \(Self.format) and \(Self.qmpFormat)")
            }
            return file.pauses
        }
        if let entries = try? JSONDecoder().decode([Entry].self, from: data) { return entries }
        throw JournalError(path: path, problem: "is not a pause journal (corrupt or unknown format); its pauses cannot be told apart, so nothing is resumed. Check the guests it may name, then remove or repair the file")
    }

    /// Records a pause before it happens. Throws if it cannot be made durable: then the guest
    /// must not be paused.
    ///
    /// A guest whose earlier entry could not be cleared (``JournalBlocks``) is not paused
    /// again until that entry is removed by hand: this throws, saying how.
    public func willPause(_ entry: Entry) throws(JournalError) {
        try Self.writers.withLock { _ throws(JournalError) in
            let current = try entries()
            if let old = current.first(where: { $0.uuid == entry.uuid }), blocks.isBlocked(entry.uuid, entries: current) {
                throw JournalError(path: path, problem: "blocks a new pause: \(blocks.howToResolve(old))")
            }
            var entries = current.filter { $0.uuid != entry.uuid }
            entries.append(entry)
            try write(entries)
        }
    }

    /// Read-modify-write of a journal is one writer at a time in this process: the agent's
    /// thread and a resume still running on a thread of its own may both clear entries.
    private static let writers = Mutex(())

    /// Clears a pause once the guest runs again, or once the pause is known not to be ours.
    public func didResume(uuid: String) throws(JournalError) {
        try Self.writers.withLock { _ throws(JournalError) in
            let entries = try entries()
            guard entries.contains(where: { $0.uuid == uuid }) else { return }
            try write(entries.filter { $0.uuid != uuid })
        }
    }

    /// Replaces the file atomically and durably: a temporary file, fsync, rename, fsync of
    /// the directory.
    private func write(_ entries: [Entry]) throws(JournalError) {
        let data: Data
        let format = entries.contains { if case .qmp = $0.target { true } else { false } } ? Self.qmpFormat : Self.format
        do { data = try JSONEncoder().encode(File(format: format, pauses: entries)) } catch {
            throw JournalError(path: path, problem: "cannot be encoded: \(error)")
        }
        try Self.writeDurably(data, to: path)
    }

    static func writeDurably(_ data: Data, to path: String) throws(JournalError) {
        let directory = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw JournalError(path: path, problem: "its directory cannot be created: \(error.localizedDescription)")
        }
        let temporary = path + ".tmp.\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw JournalError(path: path, operation: "open \(temporary)", errno: errno) }
        let written = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let writeErrno = errno
        let synced = fsync(fd)
        let syncErrno = errno
        close(fd)
        guard written == data.count else { throw JournalError(path: path, operation: "write \(temporary)", errno: writeErrno) }
        guard synced == 0 else { throw JournalError(path: path, operation: "fsync \(temporary)", errno: syncErrno) }
        guard rename(temporary, path) == 0 else { throw JournalError(path: path, operation: "rename \(temporary)", errno: errno) }
        let dirfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirfd >= 0 {
            fsync(dirfd)
            close(dirfd)
        }
    }
}

/// The index of journals in use: every journal path a samepaged started with, other than the
/// default, kept while its file exists.
public struct JournalIndex: Sendable {
    public let path: String

    public init(path: String = PauseJournal.defaultIndexPath) { self.path = path }

    /// The journals listed whose files still exist. A missing index lists none; an unreadable
    /// or corrupt one throws (it might hide a pause).
    public func journals() throws(JournalError) -> [String] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw JournalError(path: path, problem: "cannot be read: \(error.localizedDescription)")
        }
        if data.isEmpty { return [] }
        guard let paths = try? JSONDecoder().decode([String].self, from: data) else {
            throw JournalError(path: path, problem: "is not a list of pause journals (corrupt)")
        }
        return paths.filter { FileManager.default.fileExists(atPath: $0) }
    }

    /// Adds a journal (nothing for the default one); drops entries whose files are gone.
    public func register(_ journal: String) throws(JournalError) {
        guard journal != PauseJournal.defaultPath else { return }
        var paths = try journals()
        guard !paths.contains(journal) else { return }
        paths.append(journal)
        let data: Data
        do { data = try JSONEncoder().encode(paths) } catch {
            throw JournalError(path: path, problem: "cannot be encoded: \(error)")
        }
        try PauseJournal.writeDurably(data, to: path)
    }

    /// Every journal `--resume-paused` must replay: the configured one, the default one and
    /// the indexed ones, each once.
    public func journalsToReplay(configured: String) throws(JournalError) -> [String] {
        var seen = Set<String>()
        return ([configured, PauseJournal.defaultPath] + (try journals())).filter { seen.insert($0).inserted }
    }
}

/// The pause journal (or its index) could not be read or written.
public struct JournalError: Error, CustomStringConvertible, Sendable {
    /// The file.
    public var path: String
    /// What is wrong, in words.
    public var problem: String

    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    init(path: String, operation: String, errno: Int32) {
        self.init(path: path, problem: SystemError(errno: Errno(rawValue: errno), operation: operation).description)
    }

    public var description: String { "pause journal \(path) \(problem)" }
}
extension PauseJournal: PauseJournaling {}

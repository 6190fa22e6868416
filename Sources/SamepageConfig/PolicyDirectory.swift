import Glibc
import SamepageModel
import Synchronization

/// The per-guest policy files of a directory, and the policy each guest gets from them.
///
/// ## Files
///
/// - `UUID.toml` applies to the guest with that UUID (any case in the file name), and to no
///   other guest: a file whose name has the form of a UUID (8-4-4-4-12 hexadecimal digits) is
///   matched against guests' UUIDs only, never against their names;
/// - `VMID.toml` (digits only, like `101.toml`) applies to the Proxmox VE guest with that VM
///   id: unique in a Proxmox cluster, where names may repeat;
/// - `NAME.toml` applies to the guest with that libvirt name (case-sensitive), when NAME does
///   not have the form of a UUID; a name of digits only is a VMID for a Proxmox VE guest, and
///   a name for the others;
/// - `default.toml` applies to guests that have neither;
/// - other files (not ending in `.toml`, or starting with `.`, such as editor swap files and
///   `example.toml.sample`) are ignored. A `.toml` file that names no running guest is kept:
///   its guest may start later.
///
/// ## Precedence
///
/// For a guest, the first of these that exists and has (or had) a valid policy wins:
/// its `UUID.toml`, its `VMID.toml` (Proxmox VE guests), its `NAME.toml`, `default.toml`, then
/// ``defaultPolicy`` (from the daemon's
/// `[policy.default]`). The UUID file wins because a UUID is unique and survives a rename. A
/// guest named `default`, with a name starting with `.`, or with a name that has the form of a
/// UUID, is reached through its UUID file only. Otherwise a guest could name itself after
/// another guest's UUID and take that guest's policy and trust group; keeping UUID-shaped file
/// names for UUIDs alone leaves no file that two guests can both claim.
///
/// ## Reloading
///
/// ``reload()`` reads every file again. A file with errors is rejected: the guests it applies
/// to keep the last good policy read from that same file, and if it never had one they fall
/// through to the next level, as if the file did not exist. A file that disappears stops
/// applying. A missing directory holds no files; a directory that cannot be read is an error,
/// and leaves everything as it was.
///
/// ## Concurrency
///
/// ``policy(for:)`` may be called from any thread while ``reload()`` runs on another: state is
/// behind a mutex, files are read outside it, and reloads run one at a time.
public final class PolicyDirectory: Sendable {
    /// The name of the file that applies to guests without one of their own.
    public static let defaultFileName = "default.toml"

    /// One policy file, as last read.
    public struct Entry: Sendable, Equatable {
        /// The file's path.
        public var file: String
        /// The policy in force from this file: the file's, or the last good one when the file
        /// now has errors; nil if it has never been valid.
        public var policy: GuestPolicy?
        /// The file's errors at the last reload; empty when it is valid.
        public var errors: [ConfigError]
    }

    fileprivate struct State: Sendable {
        var directory: String
        var defaultPolicy: GuestPolicy
        /// `UUID.toml` files, keyed by lower-case UUID.
        var byUUID: [String: Entry] = [:]
        /// `NAME.toml` files, keyed by guest name (the file name without `.toml`).
        var byName: [String: Entry] = [:]
        var fallback: Entry?
        var errors: [ConfigError] = []
    }

    private let state: Mutex<State>
    /// Held for the length of a reload, so reloads do not interleave.
    private let reloading = Mutex(())

    /// A directory of policy files, not read yet: call ``reload()`` to read it.
    ///
    /// - Parameters:
    ///   - directory: The directory's path.
    ///   - defaultPolicy: The policy of guests that no file applies to.
    public init(directory: String, defaultPolicy: GuestPolicy = GuestPolicy()) {
        state = Mutex(State(directory: directory, defaultPolicy: defaultPolicy))
    }

    /// The directory's path.
    public var directory: String {
        state.withLock { $0.directory }
    }

    /// The policy of guests that no file applies to.
    public var defaultPolicy: GuestPolicy {
        state.withLock { $0.defaultPolicy }
    }

    /// The policy for `guest`, and the file it comes from (nil for ``defaultPolicy``).
    ///
    /// - Parameter vmid: the guest's Proxmox VE VM id, for a Proxmox guest: its `VMID.toml`
    ///   comes before its `NAME.toml`, and a name of digits only is never looked up for it
    ///   (a guest named `102` must not take VM 102's policy).
    public func policy(for guest: GuestIdentity, vmid: Int? = nil) -> (policy: GuestPolicy, source: String?) {
        state.withLock { state in
            if let entry = state.byUUID[guest.uuid.lowercased()], let policy = entry.policy {
                return (policy, entry.file)
            }
            if let vmid, let entry = state.byName[String(vmid)], let policy = entry.policy {
                return (policy, entry.file)
            }
            let digitsOnly = !guest.name.isEmpty && guest.name.utf8.allSatisfy { (0x30...0x39).contains($0) }
            if vmid == nil || !digitsOnly, let entry = state.byName[guest.name], let policy = entry.policy {
                return (policy, entry.file)
            }
            if let entry = state.fallback, let policy = entry.policy {
                return (policy, entry.file)
            }
            return (state.defaultPolicy, nil)
        }
    }

    /// Every policy file found at the last reload, `default.toml` included, by path.
    public var entries: [Entry] {
        state.withLock { state in
            (Array(state.byUUID.values) + Array(state.byName.values) + (state.fallback.map { [$0] } ?? []))
                .sorted { $0.file < $1.file }
        }
    }

    /// The errors of the last reload, in file order.
    public var errors: [ConfigError] {
        state.withLock { $0.errors }
    }

    /// Reads every policy file again.
    ///
    /// - Returns: The errors found, in file order, for logging; the files they are in were
    ///   rejected (see the type's documentation for what guests get instead).
    @discardableResult
    public func reload() -> [ConfigError] {
        reloading.withLock { _ in
            let directory = state.withLock { $0.directory }
            let scan = Self.read(directory: directory)
            return state.withLock { state in
                guard state.directory == directory else {
                    return state.errors  // reconfigured meanwhile; that reload's result stands
                }
                state.apply(scan)
                return state.errors
            }
        }
    }

    /// Points at another directory or default policy (after the daemon's configuration was
    /// reloaded) and reads the directory. Last good policies are forgotten if the directory
    /// changes.
    @discardableResult
    public func reconfigure(directory: String, defaultPolicy: GuestPolicy) -> [ConfigError] {
        state.withLock { state in
            if state.directory != directory {
                state = State(directory: directory, defaultPolicy: defaultPolicy)
            } else {
                state.defaultPolicy = defaultPolicy
            }
        }
        return reload()
    }

    // MARK: Reading

    /// One file's outcome.
    fileprivate struct FileResult: Sendable {
        var key: FileKey
        var file: String
        var policy: GuestPolicy?
        var errors: [ConfigError]
    }

    /// What a file applies to. UUIDs and names are separate spaces: no name is ever looked up
    /// among UUIDs, nor the reverse.
    fileprivate enum FileKey: Hashable, Sendable {
        case fallback
        /// A lower-case UUID.
        case uuid(String)
        /// A guest name that does not have the form of a UUID.
        case name(String)
    }

    /// A directory's files, or why it could not be listed.
    fileprivate enum Scan: Sendable {
        case files([FileResult], problems: [ConfigError])
        case unreadable(ConfigError)
    }

    private static func read(directory: String) -> Scan {
        let names: [String]
        switch listDirectory(directory) {
        case .success(let list): names = list
        case .failure(let error): return .unreadable(error)
        }
        var results: [FileResult] = []
        var problems: [ConfigError] = []
        var seen: [FileKey: String] = [:]
        for name in names.sorted() {
            guard let key = key(forFileName: name) else { continue }
            let path = directory.hasSuffix("/") ? directory + name : directory + "/" + name
            if let other = seen[key] {
                problems.append(ConfigError(
                    file: path, message: "ignored: \(other) applies to the same guest"
                ))
                continue
            }
            seen[key] = path
            let evaluation = PolicyFile.evaluate(path: path)
            results.append(FileResult(key: key, file: path, policy: evaluation.value, errors: evaluation.errors))
        }
        return .files(results, problems: problems)
    }

    /// What a file applies to, or nil if it is not a policy file.
    private static func key(forFileName name: String) -> FileKey? {
        guard name.hasSuffix(".toml"), !name.hasPrefix("."), name.utf8.count > 5 else { return nil }
        if name == defaultFileName { return .fallback }
        let stem = String(name.dropLast(5))
        return isUUID(stem) ? .uuid(stem.lowercased()) : .name(stem)
    }

    /// Whether `text` is a UUID in libvirt's form: 8-4-4-4-12 hexadecimal digits.
    static func isUUID(_ text: String) -> Bool {
        let scalars = Array(text.unicodeScalars)
        guard scalars.count == 36 else { return false }
        for (index, scalar) in scalars.enumerated() {
            if [8, 13, 18, 23].contains(index) {
                guard scalar == "-" else { return false }
            } else {
                switch scalar {
                case "0"..."9", "a"..."f", "A"..."F": continue
                default: return false
                }
            }
        }
        return true
    }

    /// The names in a directory; a missing directory is empty.
    private static func listDirectory(_ directory: String) -> Result<[String], ConfigError> {
        guard let stream = opendir(directory) else {
            let code = errno
            if code == ENOENT { return .success([]) }
            return .failure(ConfigError(
                file: directory, message: "cannot read policy directory: \(String(cString: strerror(code)))"
            ))
        }
        defer { closedir(stream) }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(stream) else {
                if errno != 0 {
                    return .failure(ConfigError(
                        file: directory, message: "cannot read policy directory: \(String(cString: strerror(errno)))"
                    ))
                }
                return .success(names)
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                let bytes = raw.prefix(while: { $0 != 0 })
                return String(validating: bytes, as: UTF8.self)
            }
            // A name that is not UTF-8 cannot be a guest's name or UUID.
            if let name, name != ".", name != ".." {
                names.append(name)
            }
        }
    }
}

extension PolicyDirectory.State {
    fileprivate mutating func apply(_ scan: PolicyDirectory.Scan) {
        switch scan {
        case .unreadable(let error):
            errors = [error]
        case .files(let results, let problems):
            var byUUID: [String: PolicyDirectory.Entry] = [:]
            var byName: [String: PolicyDirectory.Entry] = [:]
            var fallback: PolicyDirectory.Entry?
            for result in results {
                let previous: PolicyDirectory.Entry?
                switch result.key {
                case .fallback: previous = self.fallback
                case .uuid(let uuid): previous = self.byUUID[uuid]
                case .name(let name): previous = self.byName[name]
                }
                // A rejected file keeps the last good policy read from the same file.
                let lastGood = previous?.file == result.file ? previous?.policy : nil
                let entry = PolicyDirectory.Entry(
                    file: result.file, policy: result.policy ?? lastGood, errors: result.errors
                )
                switch result.key {
                case .fallback: fallback = entry
                case .uuid(let uuid): byUUID[uuid] = entry
                case .name(let name): byName[name] = entry
                }
            }
            self.byUUID = byUUID
            self.byName = byName
            self.fallback = fallback
            errors = (results.flatMap(\.errors) + problems).sorted()
        }
    }
}

import SamepageModel

/// A per-guest policy file: TOML with top-level keys only.
///
/// ```toml
/// mode = "merge"                  # off | report | zero | merge (default off)
/// trust_group = "web"             # [A-Za-z0-9._-], at most 64 characters (default: none)
/// max_pages = 0                   # pages tracked as sharing; 0 = unlimited
/// max_pause_ms = 10               # 1 to 1000
/// max_pause_ms_per_minute = 200   # 0 to 60000; 0 forbids pauses, else at least max_pause_ms
/// reclaim_hugetlbfs = false
/// ```
///
/// An empty file is a policy of all defaults. Unknown keys, sections, wrong types, values out
/// of range, duplicate keys and syntax errors are errors naming the file and line; files that
/// are not UTF-8 text, contain NUL characters or exceed ``maximumSize`` are rejected whole.
public enum PolicyFile {
    /// The largest policy file accepted, in bytes.
    public static let maximumSize = ConfigSource.maximumSize

    /// The longest trust group name.
    public static let maximumTrustGroupLength = 64

    /// Parses the text of a policy file, throwing its first error (in file order).
    ///
    /// - Parameters:
    ///   - text: The file's content.
    ///   - file: How the file is named in errors, usually its path.
    public static func parse(text: String, file: String) throws(ConfigError) -> GuestPolicy {
        try evaluate(text: text, file: file).get()
    }

    /// Parses the raw bytes of a policy file (which need not be UTF-8), throwing its first error.
    public static func parse(bytes: some Collection<UInt8>, file: String) throws(ConfigError) -> GuestPolicy {
        try evaluate(source: { () throws(ConfigError) in try ConfigSource(bytes: bytes, file: file) }).get()
    }

    /// Reads and parses the policy file at `path`, throwing its first error.
    public static func load(path: String) throws(ConfigError) -> GuestPolicy {
        try evaluate(path: path).get()
    }

    /// Every error in the text of a policy file, in file order; empty when it is valid.
    public static func validate(text: String, file: String) -> [ConfigError] {
        evaluate(text: text, file: file).errors
    }

    /// Every error in the policy file at `path`, in file order; empty when it is valid.
    public static func validate(path: String) -> [ConfigError] {
        evaluate(path: path).errors
    }

    // MARK: Internals

    static func evaluate(text: String, file: String) -> Evaluation<GuestPolicy> {
        evaluate(source: { () throws(ConfigError) in try ConfigSource(bytes: text.utf8, file: file) })
    }

    static func evaluate(path: String) -> Evaluation<GuestPolicy> {
        evaluate(source: { () throws(ConfigError) in try ConfigSource(path: path) })
    }

    private static func evaluate(source: () throws(ConfigError) -> ConfigSource) -> Evaluation<GuestPolicy> {
        Evaluation { () throws(ConfigError) in
            let document = try ConfigDocument(source: source())
            var root = document.rootReader()
            let policy = GuestPolicy.read(from: &root)
            root.finish()
            return (policy, document)
        }
    }
}

/// The outcome of reading a file: a value when it has no errors, and every error otherwise.
struct Evaluation<Value> {
    var value: Value?
    var errors: [ConfigError]

    /// Runs `body`; a thrown error (unreadable file, syntax) is the only error, otherwise the
    /// document's errors decide.
    init(_ body: () throws(ConfigError) -> (Value, ConfigDocument)) {
        do {
            let (value, document) = try body()
            errors = document.sortedErrors
            self.value = errors.isEmpty ? value : nil
        } catch {
            errors = [error]
            value = nil
        }
    }

    func get() throws(ConfigError) -> Value {
        if let value { return value }
        throw errors.first ?? ConfigError(file: "?", message: "invalid")
    }
}

extension GuestPolicy {
    /// The valid range of `max_pause_ms`.
    static let maxPauseMsRange = 1...1000
    /// The valid range of `max_pause_ms_per_minute`.
    static let maxPauseMsPerMinuteRange = 0...60000

    /// Reads the policy keys of `table` (a policy file's root or `[policy.default]`) over the
    /// defaults, reporting errors to its document.
    static func read(from table: inout TableReader) -> GuestPolicy {
        // The keys are the policy's own names (as on the wire).
        let key = (
            mode: CodingKeys.mode.stringValue, trustGroup: CodingKeys.trustGroup.stringValue,
            maxPages: CodingKeys.maxPages.stringValue, maxPauseMs: CodingKeys.maxPauseMs.stringValue,
            maxPauseMsPerMinute: CodingKeys.maxPauseMsPerMinute.stringValue,
            reclaimHugetlbfs: CodingKeys.reclaimHugetlbfs.stringValue
        )
        var policy = GuestPolicy()
        if let mode = table.choice(key.mode, named: \PolicyMode.rawValue) {
            policy.mode = mode
        }
        if let group = table.string(key.trustGroup, checkedBy: trustGroupProblem) {
            policy.trustGroup = group.isEmpty ? nil : group
        }
        if let pages = table.integer(key.maxPages, in: 0...Int.max, describedAs: "0 (unlimited) or more") {
            policy.maxPages = pages
        }
        let pause = table.integer(key.maxPauseMs, in: maxPauseMsRange)
        if let pause {
            policy.maxPauseMs = pause
        }
        let perMinute = table.integer(key.maxPauseMsPerMinute, in: maxPauseMsPerMinuteRange)
        if let perMinute {
            policy.maxPauseMsPerMinute = perMinute
        }
        if let reclaim = table.bool(key.reclaimHugetlbfs) {
            policy.reclaimHugetlbfs = reclaim
        }
        // Checked only when both values are valid, and at whichever key the file sets.
        let pauseValid = pause != nil || !table.contains(key.maxPauseMs)
        let perMinuteValid = perMinute != nil || !table.contains(key.maxPauseMsPerMinute)
        if pauseValid, perMinuteValid, policy.maxPauseMsPerMinute != 0,
            policy.maxPauseMsPerMinute < policy.maxPauseMs
        {
            table.error(
                at: perMinute != nil ? key.maxPauseMsPerMinute : key.maxPauseMs,
                "\(table.name(key.maxPauseMsPerMinute)) = \(policy.maxPauseMsPerMinute) is less than "
                    + "\(table.name(key.maxPauseMs)) = \(policy.maxPauseMs): no pause would fit in a minute's budget "
                    + "(0 forbids pausing)"
            )
        }
        return policy
    }

    /// Why a trust group name is not acceptable, or nil. `""` is: it means none, as leaving
    /// the key out does (a policy's group of the guest's own; `kernel_ksm`'s no group at all).
    static func trustGroupProblem(_ group: String) -> String? {
        if group.isEmpty { return nil }
        if group.unicodeScalars.count > PolicyFile.maximumTrustGroupLength {
            return "is too long: at most \(PolicyFile.maximumTrustGroupLength) characters"
        }
        let allowed = group.unicodeScalars.allSatisfy { scalar in
            switch scalar {
            case "A"..."Z", "a"..."z", "0"..."9", ".", "_", "-": return true
            default: return false
            }
        }
        if !allowed {
            return "may contain only letters, digits, '.', '_' and '-'"
        }
        return nil
    }
}

import Glibc

/// What `samepaged --check-config` finds: the daemon's configuration file and every policy file
/// it would load, checked without starting anything.
///
/// Nothing is written and nothing outside the files is touched (no socket, no journal, no
/// libvirt): the check is safe beside a running daemon, and `systemctl reload` runs it first
/// so that a bad file fails the reload instead of being rejected quietly in the journal.
public struct ConfigurationCheck: Sendable, Equatable {
    /// The configuration file read, or the default path that was looked for.
    public var configurationFile: String
    /// Whether that file exists (a missing default file means the built-in defaults).
    public var configurationFileExists: Bool
    /// The policy directory checked; nil when the configuration file is invalid, since then
    /// which directory the daemon would read is not known.
    public var policyDirectory: String?
    /// Policy files read from it, valid or not.
    public var policyFiles: Int
    /// Every problem, in file order: `FILE:LINE: message`, or `FILE: message`.
    public var errors: [ConfigError]

    /// Whether nothing is wrong.
    public var isValid: Bool { errors.isEmpty }

    /// Checks the configuration file and the policy files it leads to.
    ///
    /// - Parameters:
    ///   - path: `--config`; nil for the default file, which may be missing.
    ///   - policyDirectory: `--policy-dir`, which overrides the file's `policy.directory`.
    ///   - defaultPath: where the configuration is looked for without `path`.
    public static func run(
        configuration path: String?, policyDirectory: String? = nil,
        defaultPath: String = DaemonConfiguration.defaultPath
    ) -> ConfigurationCheck {
        let file = path ?? defaultPath
        var status = stat()
        let exists = !(path == nil && stat(file, &status) != 0 && errno == ENOENT)
        var check = ConfigurationCheck(
            configurationFile: file, configurationFileExists: exists, policyDirectory: nil, policyFiles: 0, errors: [])
        var settings = DaemonConfiguration.defaults
        if exists {
            check.errors = DaemonConfiguration.validate(path: file)
            guard check.errors.isEmpty, let loaded = try? DaemonConfiguration.load(path: file) else { return check }
            settings = loaded
        }
        let directory = policyDirectory ?? settings.policyDirectory
        let policies = PolicyDirectory(directory: directory, defaultPolicy: settings.defaultPolicy)
        check.errors += policies.reload()
        check.policyDirectory = directory
        check.policyFiles = policies.entries.count
        return check
    }

    /// The summary printed when nothing is wrong, one line:
    /// "/etc/samepage/samepaged.toml: ok; /etc/samepage/guests.d: 2 policy files ok".
    public var summary: String {
        let configuration = configurationFileExists
            ? "\(configurationFile): ok" : "no \(configurationFile): built-in defaults"
        guard let policyDirectory else { return configuration }
        let files = policyFiles == 1 ? "1 policy file" : "\(policyFiles) policy files"
        return "\(configuration); \(policyDirectory): \(files) ok"
    }
}

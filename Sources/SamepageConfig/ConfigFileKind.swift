import TOMLKit

/// The two kinds of file Samepage reads, told apart for `samepage policy validate`, which is
/// given either.
///
/// A per-guest policy file has top-level keys only; the daemon's configuration file has
/// sections only (`[libvirt]`, `[scan]`, ...). A file is taken for the daemon's when it is
/// named `samepaged.toml` or has one of the daemon's sections; anything else, including a file
/// that does not parse, is taken for a policy file (whose validation then reports what is
/// wrong with it).
public enum ConfigFileKind: Sendable, Equatable {
    /// A per-guest policy file (``PolicyFile``).
    case policy
    /// samepaged's configuration file (``DaemonConfiguration``).
    case daemon

    /// The daemon configuration's sections.
    public static let daemonSections = ["libvirt", "control", "metrics", "scan", "policy", "reclaim", "qemu", "kernel_ksm"]

    /// The daemon configuration's file name.
    public static let daemonFileName = "samepaged.toml"

    /// The kind of the file at `path`, from its name, else its content (see the type).
    public static func of(path: String) -> ConfigFileKind {
        if path.split(separator: "/").last.map(String.init) == daemonFileName { return .daemon }
        guard let source = try? ConfigSource(path: path) else { return .policy }
        return of(source: source)
    }

    /// The kind of a file with this content: the daemon's if a daemon section is at the top.
    public static func of(text: String) -> ConfigFileKind {
        guard let source = try? ConfigSource(bytes: text.utf8, file: "") else { return .policy }
        return of(source: source)
    }

    private static func of(source: ConfigSource) -> ConfigFileKind {
        // Through ConfigDocument, which keeps from toml++ the input it must not see.
        guard let document = try? ConfigDocument(source: source) else { return .policy }
        let root = document.root
        return zip(root.keys, root.values).contains { daemonSections.contains($0) && $1.type == .table } ? .daemon : .policy
    }

    /// Every error in the file at `path`, validated as this kind of file, in file order.
    public func validate(path: String) -> [ConfigError] {
        switch self {
        case .policy: PolicyFile.validate(path: path)
        case .daemon: DaemonConfiguration.validate(path: path)
        }
    }

    /// The kind in words, for messages: "policy file", "daemon configuration".
    public var description: String {
        switch self {
        case .policy: "policy file"
        case .daemon: "daemon configuration"
        }
    }
}

import Glibc
import SamepageConfig
import SamepageModel

/// Where `samepage` finds samepaged's control socket, first match wins:
///
/// 1. `--socket PATH`;
/// 2. the `SAMEPAGE_SOCKET` environment variable (when not empty);
/// 3. `control.socket` of the daemon's configuration file: `--config PATH`, else the
///    `SAMEPAGE_CONFIG` environment variable, else `/etc/samepage/samepaged.toml`;
/// 4. the built-in default, `/run/samepage/samepaged.sock`.
///
/// A configuration file named by `--config` or `SAMEPAGE_CONFIG` must exist; the default one
/// may be missing (then the built-in default applies). A file that exists but cannot be read
/// or is not a valid configuration is an error that names the file and says why: the daemon
/// would refuse that file too, so its socket is not known.
public struct ControlSocketLocation: Sendable, Equatable {
    /// The environment variable that names the socket.
    public static let socketVariable = "SAMEPAGE_SOCKET"
    /// The environment variable that names the daemon's configuration file.
    public static let configVariable = "SAMEPAGE_CONFIG"

    /// Where the path came from, for messages.
    public enum Origin: Sendable, Equatable {
        /// `--socket`.
        case option
        /// `SAMEPAGE_SOCKET`.
        case environment
        /// `control.socket` of this configuration file (or its default, when the file does
        /// not set it).
        case configuration(String)
        /// No option, variable or file: `/run/samepage/samepaged.sock`.
        case builtIn
    }

    /// The socket's path.
    public var path: String
    /// Where ``path`` came from.
    public var origin: Origin

    /// A path and where it came from.
    public init(path: String, origin: Origin) {
        self.path = path
        self.origin = origin
    }

    /// Resolves the socket as the type's documentation says.
    ///
    /// - Parameters:
    ///   - socketOption: `--socket`, if given.
    ///   - configOption: `--config`, if given.
    ///   - environment: the process's environment.
    ///   - defaultConfig: the configuration file read when neither `--config` nor
    ///     `SAMEPAGE_CONFIG` names one.
    /// - Throws: The configuration file's first error (an unreadable file, a missing file that
    ///   was named explicitly, an invalid key), as `FILE[:LINE]: message`.
    public static func resolve(
        socketOption: String?, configOption: String?, environment: [String: String],
        defaultConfig: String = DaemonConfiguration.defaultPath
    ) throws(ConfigError) -> ControlSocketLocation {
        if let socketOption { return ControlSocketLocation(path: socketOption, origin: .option) }
        if let variable = environment[socketVariable], !variable.isEmpty {
            return ControlSocketLocation(path: variable, origin: .environment)
        }
        let named = configOption ?? environment[configVariable].flatMap { $0.isEmpty ? nil : $0 }
        let file = named ?? defaultConfig
        if named == nil {
            var status = stat()
            if stat(file, &status) != 0, errno == ENOENT {
                return ControlSocketLocation(path: HostDefaults.controlSocket, origin: .builtIn)
            }
        }
        let configuration = try DaemonConfiguration.load(path: file)
        return ControlSocketLocation(path: configuration.controlSocket, origin: .configuration(file))
    }
}

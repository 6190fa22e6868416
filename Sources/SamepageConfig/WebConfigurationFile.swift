import Glibc
import SamepageModel
import Yams

/// The metrics endpoint's web configuration file (`metrics.web_config_file`): Prometheus
/// exporter-toolkit's YAML, so that an operator writes for samepaged what they write for
/// node_exporter:
///
/// ```yaml
/// tls_server_config:
///   cert_file: samepage.crt          # relative to this file's directory
///   key_file: samepage.key
///   client_auth_type: RequireAndVerifyClientCert   # or NoClientCert, VerifyClientCertIfGiven
///   client_ca_file: scrapers-ca.crt  # with a client_auth_type that verifies, only then
///   min_version: TLS12               # or TLS13
/// basic_auth_users:
///   prometheus: $2y$10$…             # bcrypt (htpasswd -nBC 10 prometheus)
/// ```
///
/// Stricter than exporter-toolkit where leniency would hide a mistake: an unknown key is an
/// error, not ignored (a misspelt `basic_auth_users` would otherwise serve without
/// authentication), and so are exporter-toolkit's keys samepaged does not implement (inline
/// `cert`/`key`, cipher and curve lists, `http_server_config`, `rate_limit`); a file that asks
/// for neither TLS nor authentication is refused. Every error names the file and, where
/// there is one, the line.
public enum WebConfigurationFile {
    /// The largest file accepted, in bytes: a web configuration is a few hundred.
    public static let maximumSize = 1 << 20

    /// The `client_auth_type` values exporter-toolkit knows that BoringSSL, as SwiftNIO
    /// drives it, cannot honour: each asks for a certificate it would not verify.
    static let refusedClientAuth: [String: String] = [
        "RequestClientCert": "is not supported (a certificate asked for and never verified); use VerifyClientCertIfGiven with client_ca_file",
        "RequireAnyClientCert": "is not supported (a certificate required and never verified); use RequireAndVerifyClientCert with client_ca_file",
        "RequireClientCert": "is not supported (a certificate required and never verified); use RequireAndVerifyClientCert with client_ca_file",
    ]

    static let refusedVersions: [String: String] = [
        "TLS10": "is older than samepaged serves: TLS12 or TLS13",
        "TLS11": "is older than samepaged serves: TLS12 or TLS13",
    ]

    /// Reads the file at `path` (a regular file of at most ``maximumSize`` bytes), parses it,
    /// resolves relative paths against its directory, and checks that the files it names can
    /// be opened. The certificates and keys are loaded by the endpoint itself.
    public static func load(path: String) throws(ConfigError) -> WebConfiguration {
        let source = try ConfigSource(path: path, limit: maximumSize)
        return try parse(text: source.text, file: path, directory: directory(of: path), checkFile: readableFileProblem)
    }

    /// Parses the text of a web configuration file.
    ///
    /// - Parameters:
    ///   - text: The file's content.
    ///   - file: How the file is named in errors, usually its path.
    ///   - directory: What relative paths in the file are relative to.
    ///   - checkFile: A problem with a path the file names (after resolving), or nil; by
    ///     default none is opened.
    public static func parse(
        text: String, file: String, directory: String, checkFile: (String) -> String? = { _ in nil }
    ) throws(ConfigError) -> WebConfiguration {
        if let line = deepNestingLine(text) {
            throw ConfigError(
                file: file, line: line,
                message: "nested more than \(maximumNesting) levels deep (a web configuration is two levels deep)")
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw syntaxError(error, file: file)
        } catch {
            throw ConfigError(file: file, message: "not YAML: \(error)")
        }
        guard let root, !YAMLMapping.isNull(root) else {
            throw ConfigError(file: file, message: "file is empty: set tls_server_config, basic_auth_users or both")
        }
        let top = try YAMLMapping(root, file: file, path: [])
        try top.finish(
            known: ["tls_server_config", "basic_auth_users"],
            refused: [
                "http_server_config": "samepaged serves HTTP/1.1 only and sets no extra headers",
                "rate_limit": "samepaged bounds each peer's connections, requests and time instead",
            ])
        var configuration = WebConfiguration()
        if let node = top.value("tls_server_config") {
            let section = try YAMLMapping(node, file: file, path: ["tls_server_config"])
            configuration.tls = try readTLS(section, directory: directory, checkFile: checkFile)
        }
        if let node = top.value("basic_auth_users") {
            let section = try YAMLMapping(node, file: file, path: ["basic_auth_users"])
            configuration.basicAuthUsers = try readUsers(section)
        }
        if configuration.tls == nil && configuration.basicAuthUsers.isEmpty {
            throw ConfigError(
                file: file, line: root.mark?.line,
                message: "the file asks for neither TLS nor authentication: set tls_server_config, basic_auth_users or both")
        }
        return configuration
    }

    /// `tls_server_config`; nil when it sets nothing (exporter-toolkit then serves plain HTTP).
    private static func readTLS(
        _ section: YAMLMapping, directory: String, checkFile: (String) -> String?
    ) throws(ConfigError) -> WebConfiguration.TLS? {
        let toolkitOnly = "samepaged reads certificates from files and uses BoringSSL's defaults for ciphers and curves"
        try section.finish(
            known: ["cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version"],
            refused: [
                "cert": toolkitOnly, "key": toolkitOnly, "client_ca": toolkitOnly,
                "cipher_suites": toolkitOnly, "curve_preferences": toolkitOnly,
                "prefer_server_cipher_suites": toolkitOnly,
                "max_version": "samepaged serves up to the newest version BoringSSL has",
                "client_allowed_sans": "samepaged checks a client certificate against client_ca_file only",
            ])
        if section.entries.allSatisfy({ YAMLMapping.isNull($0.value) }) { return nil }

        func path(_ key: String) throws(ConfigError) -> String? {
            guard let text = try section.string(key) else { return nil }
            let node = section.value(key)!
            guard !text.isEmpty, !text.contains("\0") else { throw section.error(at: node, "\(section.name(key)) is empty") }
            let resolved = text.hasPrefix("/") ? text : directory + "/" + text
            if let problem = checkFile(resolved) {
                throw section.error(at: node, "\(section.name(key)): \(resolved): \(problem)")
            }
            return resolved
        }
        let certificate = try path("cert_file")
        let key = try path("key_file")
        guard let certificate else {
            throw section.error(at: section.entries[0].keyNode, "tls_server_config needs cert_file (and key_file)")
        }
        guard let key else {
            throw section.error(at: section.entries[0].keyNode, "tls_server_config needs key_file (and cert_file)")
        }
        let clientCA = try path("client_ca_file")
        let clientAuth: WebConfiguration.ClientAuth =
            try section.choice("client_auth_type", refusing: refusedClientAuth) ?? .noClientCert
        let version: WebConfiguration.Version = try section.choice("min_version", refusing: refusedVersions) ?? .tls12
        switch (clientAuth, clientCA) {
        case (.noClientCert, .some):
            throw section.error(
                at: section.value("client_ca_file")!,
                "client_ca_file is set but client_auth_type is NoClientCert: set client_auth_type to "
                    + "RequireAndVerifyClientCert (or VerifyClientCertIfGiven), or remove client_ca_file")
        case (.verifyClientCertIfGiven, nil), (.requireAndVerifyClientCert, nil):
            throw section.error(
                at: section.value("client_auth_type")!,
                "client_auth_type \(clientAuth.rawValue) needs client_ca_file, the authorities client certificates are checked against")
        default:
            break
        }
        return WebConfiguration.TLS(
            certificateFile: certificate, keyFile: key, clientCAFile: clientCA, clientAuth: clientAuth,
            minimumVersion: version)
    }

    /// `basic_auth_users`: each user name (usable in a Basic `Authorization`: no `:`, no
    /// control characters) with its bcrypt hash.
    private static func readUsers(_ section: YAMLMapping) throws(ConfigError) -> [String: String] {
        var users: [String: String] = [:]
        for entry in section.entries {
            let user = entry.key
            if user.isEmpty || user.contains(":") || user.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
                throw section.error(
                    at: entry.keyNode,
                    "basic_auth_users: \(YAMLMapping.quoted(user)) cannot be a user name (empty, or holds ':' or a control character)")
            }
            guard let hash = try section.string(user) else {
                throw section.error(at: entry.keyNode, "\(section.name(user)) has no password hash")
            }
            // The value is not quoted back: a plaintext password put there by mistake stays
            // out of the logs.
            if let problem = BcryptSyntax.problem(hash) {
                throw section.error(at: entry.value, "\(section.name(user)) is not a bcrypt hash: \(problem)")
            }
            users[user] = hash
        }
        return users
    }

    /// Yams composes a document recursively, a level of the stack for each level of nesting:
    /// `[[[[…` or `- - - -…` a megabyte long would overflow the stack. A web configuration is
    /// two levels deep; this many is refused before Yams sees the text.
    static let maximumNesting = 64

    /// The first line where the text may nest deeper than ``maximumNesting``, counted
    /// generously (brackets and braces in quotes and comments count too): indentation,
    /// sequence dashes that open a line, and flow brackets not yet closed.
    static func deepNestingLine(_ text: String) -> Int? {
        var flow = 0
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let bytes = Array(line.utf8)
            var position = 0
            while position < bytes.count, bytes[position] == UInt8(ascii: " ") || bytes[position] == UInt8(ascii: "\t") {
                position += 1
            }
            let indentation = position
            var dashes = 0
            while position + 1 < bytes.count, bytes[position] == UInt8(ascii: "-"), bytes[position + 1] == UInt8(ascii: " ") {
                dashes += 1
                position += 2
                while position < bytes.count, bytes[position] == UInt8(ascii: " ") { position += 1 }
            }
            for byte in bytes {
                switch byte {
                case UInt8(ascii: "["), UInt8(ascii: "{"): flow += 1
                case UInt8(ascii: "]"), UInt8(ascii: "}"): flow = max(0, flow - 1)
                default: break
                }
            }
            // Indentation costs a column a level at least; two columns a level is still far
            // past any real file.
            if indentation / 2 > maximumNesting || dashes > maximumNesting || flow > maximumNesting {
                return index + 1
            }
        }
        return nil
    }

    /// The directory of `path`, what its relative paths are relative to ("." for a bare name).
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Why the file at `path` cannot be read as a regular file, or nil when it can.
    static func readableFileProblem(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { return "cannot open: \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { return "cannot stat: \(String(cString: strerror(errno)))" }
        guard (status.st_mode & S_IFMT) == S_IFREG else { return "not a regular file" }
        return nil
    }

    /// Yams's error as `FILE:LINE: problem`, without the text it quotes (which may hold hashes).
    private static func syntaxError(_ error: YamlError, file: String) -> ConfigError {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            let detail = context.map { "\($0.text) " } ?? ""
            return ConfigError(file: file, line: mark.line, column: mark.column, message: "not valid YAML: \(detail)\(problem)")
        case .reader(let problem, _, _, _):
            return ConfigError(file: file, message: "not valid YAML: \(problem)")
        default:
            return ConfigError(file: file, message: "not valid YAML")
        }
    }
}

/// The modular crypt format of bcrypt as libxcrypt reads it: `$2a$`, `$2b$` or `$2y$`, a
/// two-digit cost from 04 to 31, `$`, then 22 characters of salt and 31 of hash in bcrypt's
/// base64 alphabet (`./A-Za-z0-9`): 60 characters in all.
enum BcryptSyntax {
    /// What is wrong with `hash`, or nil when it is a bcrypt hash.
    static func problem(_ hash: String) -> String? {
        let bytes = Array(hash.utf8)
        guard bytes.count >= 7, bytes[0] == UInt8(ascii: "$"), bytes[1] == UInt8(ascii: "2"),
            [UInt8(ascii: "a"), UInt8(ascii: "b"), UInt8(ascii: "y")].contains(bytes[2]), bytes[3] == UInt8(ascii: "$"),
            bytes[6] == UInt8(ascii: "$")
        else { return "expected $2a$, $2b$ or $2y$ then the cost (htpasswd -nBC 10 USER makes one)" }
        guard let cost = Int(String(decoding: bytes[4...5], as: UTF8.self)), (4...31).contains(cost) else {
            return "the cost must be two digits from 04 to 31"
        }
        guard bytes.count == 60 else { return "expected 60 characters, found \(bytes.count)" }
        let alphabet = Set(Array("./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8))
        guard bytes[7...].allSatisfy(alphabet.contains) else { return "salt and hash must be in bcrypt's base64 alphabet" }
        return nil
    }
}

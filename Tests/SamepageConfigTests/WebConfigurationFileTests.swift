import Foundation
import SamepageModel
import TestSupport
import Testing
@testable import SamepageConfig

/// The metrics endpoint's web configuration file: exporter-toolkit's YAML, read strictly.
@Suite struct WebConfigurationFileTests {
    /// bcrypt of "s3cret pw" at cost 4, made once by Python's crypt module (not by the code
    /// under test).
    static let hash = "$2b$04$wASTi/ua4eizf.PxBXJoreaQzes2DidcLKYcZamRVcztpXCDmpyZ."

    func parse(_ text: String, directory: String = "/etc/samepage") throws(ConfigError) -> WebConfiguration {
        try WebConfigurationFile.parse(text: text, file: "/etc/samepage/web.yml", directory: directory)
    }

    /// The error `text` is refused with.
    func refusal(_ text: String) -> ConfigError? {
        do {
            _ = try parse(text)
            return nil
        } catch {
            return error
        }
    }

    /// The error loading the file at `path` fails with.
    func loadError(_ path: String) -> ConfigError? {
        do {
            _ = try WebConfigurationFile.load(path: path)
            return nil
        } catch {
            return error
        }
    }

    @Test func fullFileWithRelativePaths() throws {
        let configuration = try parse(
            """
            # exporter-toolkit's own example, and more
            tls_server_config:
              cert_file: samepage.crt
              key_file: /etc/ssl/private/samepage.key
              client_auth_type: RequireAndVerifyClientCert
              client_ca_file: ca/scrapers.pem
              min_version: TLS13
            basic_auth_users:
              prometheus: \(Self.hash)
              'grafana': "$2y$04$wASTi/ua4eizf.PxBXJoreaQzes2DidcLKYcZamRVcztpXCDmpyZ."
            """)
        #expect(configuration.tls == WebConfiguration.TLS(
            certificateFile: "/etc/samepage/samepage.crt", keyFile: "/etc/ssl/private/samepage.key",
            clientCAFile: "/etc/samepage/ca/scrapers.pem", clientAuth: .requireAndVerifyClientCert, minimumVersion: .tls13))
        #expect(configuration.basicAuthUsers == [
            "prometheus": Self.hash, "grafana": "$2y$04$wASTi/ua4eizf.PxBXJoreaQzes2DidcLKYcZamRVcztpXCDmpyZ.",
        ])
    }

    @Test func defaultsOfTLS() throws {
        let configuration = try parse("tls_server_config:\n  cert_file: a.pem\n  key_file: a.key\n")
        #expect(configuration.tls?.clientAuth == .noClientCert)
        #expect(configuration.tls?.minimumVersion == .tls12)
        #expect(configuration.tls?.clientCAFile == nil)
        #expect(configuration.basicAuthUsers.isEmpty)
    }

    @Test func usersAloneServePlainHTTP() throws {
        let configuration = try parse("tls_server_config:\nbasic_auth_users:\n  alice: \(Self.hash)\n")
        #expect(configuration.tls == nil)
        #expect(configuration.basicAuthUsers == ["alice": Self.hash])
    }

    @Test("A misspelt key is an error naming it and its line, never skipped", arguments: [
        ("basic_auth_user:\n  alice: x\n", 1, "unknown key \"basic_auth_user\""),
        ("basic_auth_users:\n  alice: \(WebConfigurationFileTests.hash)\ntls_server_config:\n  cert_file: a\n  key_file: b\n  min_verison: TLS13\n", 6,
         "unknown key \"tls_server_config.min_verison\""),
        ("rate_limit:\n  interval: 1s\n", 1, "rate_limit is not supported"),
        ("tls_server_config:\n  cert: |\n    PEM\n", 2, "tls_server_config.cert is not supported"),
    ])
    func unknownKeys(text: String, line: Int, message: String) {
        let error = refusal(text)
        #expect(error?.file == "/etc/samepage/web.yml")
        #expect(error?.line == line)
        #expect(error?.message.hasPrefix(message) == true, "\(String(describing: error))")
    }

    @Test("Values samepaged cannot honour are refused", arguments: [
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequestClientCert\n", 4,
         "tls_server_config.client_auth_type: RequestClientCert is not supported"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Sometimes\n", 4,
         "tls_server_config.client_auth_type = \"Sometimes\" is not one of NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n", 4,
         "tls_server_config.min_version: TLS10 is older than samepaged serves"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: ca.pem\n", 4,
         "client_ca_file is set but client_auth_type is NoClientCert"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: VerifyClientCertIfGiven\n", 4,
         "client_auth_type VerifyClientCertIfGiven needs client_ca_file"),
        ("tls_server_config:\n  key_file: b\n", 2, "tls_server_config needs cert_file"),
        ("tls_server_config:\n  cert_file: [a, b]\n  key_file: b\n", 2, "tls_server_config.cert_file must be a single value, not a list"),
        ("basic_auth_users:\n  'al:ice': \(WebConfigurationFileTests.hash)\n", 2, "basic_auth_users: \"al:ice\" cannot be a user name"),
        ("basic_auth_users:\n  alice: \(WebConfigurationFileTests.hash)\n  alice: \(WebConfigurationFileTests.hash)\n", 3, "basic_auth_users.alice is set twice"),
        ("basic_auth_users: [alice]\n", 1, "basic_auth_users must be a mapping of keys to values, not a list"),
        ("- tls_server_config\n", 1, "the file must be a mapping of keys to values, not a list"),
        ("tls_server_config:\n  cert_file: a\n key_file: b\n", 3, "not valid YAML"),
    ])
    func refusedValues(text: String, line: Int, message: String) {
        let error = refusal(text)
        #expect(error?.line == line, "\(String(describing: error))")
        #expect(error?.message.hasPrefix(message) == true, "\(String(describing: error))")
    }

    @Test("A hash that is not bcrypt is refused without being quoted back", arguments: [
        ("hunter2", "expected $2a$, $2b$ or $2y$ then the cost (htpasswd -nBC 10 USER makes one)"),
        ("$2b$4$wASTi/ua4eizf.PxBXJoreaQzes2DidcLKYcZamRVcztpXCDmpyZ.", "expected $2a$, $2b$ or $2y$ then the cost (htpasswd -nBC 10 USER makes one)"),
        ("$2b$03$wASTi/ua4eizf.PxBXJoreaQzes2DidcLKYcZamRVcztpXCDmpyZ.", "the cost must be two digits from 04 to 31"),
        ("$2b$04$wASTi/ua4eizf.PxBXJoreaQzes2DidcLKYcZamRVcztpXCDmpyZ", "expected 60 characters, found 59"),
        ("$2b$04$wASTi/ua4eizf.PxBXJoreaQzes2DidcLKYcZamRVcztpXCDmpy!.", "salt and hash must be in bcrypt's base64 alphabet"),
        ("$6$salt$Hm2W7zMqrdgDNbPZL4nGV6mRVHUZ1ucGjm0hsN3TR1r1e9Z5AD5ERLXU.qHOwyCE1GdMMrGlEGN.3M9yT1.", "expected $2a$, $2b$ or $2y$ then the cost (htpasswd -nBC 10 USER makes one)"),
    ])
    func badHash(hash: String, problem: String) {
        let error = refusal("basic_auth_users:\n  alice: '\(hash)'\n")
        #expect(error?.line == 2)
        #expect(error?.message == "basic_auth_users.alice is not a bcrypt hash: \(problem)", "\(String(describing: error))")
        #expect(error?.description.contains(hash) == false)
    }

    @Test func emptyFileIsRefused() {
        #expect(refusal("")?.message.hasPrefix("file is empty") == true)
        #expect(refusal("# nothing\n")?.message.hasPrefix("file is empty") == true)
        #expect(refusal("tls_server_config:\n")?.message.hasPrefix("the file asks for neither TLS nor authentication") == true)
    }

    @Test func loadChecksTheFilesItNames() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("web.yml", "tls_server_config:\n  cert_file: tls/cert.pem\n  key_file: key.pem\n")
        try directory.write("key.pem", "key")

        // The certificate named relative to the file's directory is missing: the error names
        // the web configuration file, the key's line and the resolved path.
        var error = loadError(directory.file("web.yml"))
        #expect(error?.file == directory.file("web.yml"))
        #expect(error?.line == 2)
        #expect(error?.message == "tls_server_config.cert_file: \(directory.path)/tls/cert.pem: cannot open: No such file or directory")

        try FileManager.default.createDirectory(atPath: directory.file("tls"), withIntermediateDirectories: false)
        try directory.write("tls/cert.pem", "cert")
        let loaded = try WebConfigurationFile.load(path: directory.file("web.yml"))
        #expect(loaded.tls?.certificateFile == "\(directory.path)/tls/cert.pem")
        #expect(loaded.tls?.keyFile == "\(directory.path)/key.pem")

        // A directory where a file is expected.
        try directory.write("web.yml", "tls_server_config:\n  cert_file: tls\n  key_file: key.pem\n")
        error = loadError(directory.file("web.yml"))
        #expect(error?.message == "tls_server_config.cert_file: \(directory.path)/tls: not a regular file")
    }

    @Test func missingAndOversizedFiles() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var error = loadError(directory.file("absent.yml"))
        #expect(error?.description == "\(directory.file("absent.yml")): cannot open: No such file or directory")

        let padding = String(repeating: "# padding\n", count: (WebConfigurationFile.maximumSize / 10) + 1)
        try directory.write("big.yml", padding + "basic_auth_users:\n  alice: \(Self.hash)\n")
        error = loadError(directory.file("big.yml"))
        #expect(error?.message.hasPrefix("file is too large") == true, "\(String(describing: error))")
        #expect(error?.line == nil)
    }

    @Test("Nesting Yams would recurse into without end is refused before it parses", arguments: [
        String(repeating: "[", count: 100_000),
        String(repeating: "- ", count: 100_000) + "x",
        "basic_auth_users:\n" + (1...80).map { String(repeating: "  ", count: $0) + "k\($0):" }.joined(separator: "\n"),
    ])
    func deepNesting(text: String) {
        let error = refusal(text)
        #expect(error?.message.hasPrefix("nested more than 64 levels deep") == true, "\(String(describing: error))")
    }

    @Test func directoryOfAPath() {
        #expect(WebConfigurationFile.directory(of: "/etc/samepage/web.yml") == "/etc/samepage")
        #expect(WebConfigurationFile.directory(of: "/web.yml") == "/")
        #expect(WebConfigurationFile.directory(of: "web.yml") == ".")
    }
}

extension WebConfigurationFileTests {
    /// The shipped sample is valid once its placeholder is a hash, and refused until then.
    @Test func shippedSample() throws {
        let path = repositoryRoot.appendingPathComponent("config/web.yml.sample").path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(refusal(text)?.message.hasPrefix("basic_auth_users.prometheus is not a bcrypt hash") == true)
        let filled = try parse(text.replacingOccurrences(of: "REPLACE-WITH-A-BCRYPT-HASH", with: Self.hash))
        #expect(filled.tls == WebConfiguration.TLS(
            certificateFile: "/etc/samepage/samepage.crt", keyFile: "/etc/samepage/samepage.key"))
        #expect(filled.basicAuthUsers == ["prometheus": Self.hash])
    }
}

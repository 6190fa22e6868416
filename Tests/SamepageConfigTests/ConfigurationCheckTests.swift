import Foundation
import Testing
import TestSupport
@testable import SamepageConfig

/// `samepage policy validate` telling the two kinds of file apart, and `samepaged --check-config`.
@Suite struct ConfigurationCheckTests {
    @Test("A file with the daemon's sections, or named samepaged.toml, is the daemon's configuration")
    func kinds() throws {
        #expect(ConfigFileKind.of(text: "[libvirt]\nuri = \"qemu:///system\"\n") == .daemon)
        #expect(ConfigFileKind.of(text: "[kernel_ksm]\nenabled = true\n") == .daemon)
        #expect(ConfigFileKind.of(text: "mode = \"merge\"\n") == .policy)
        #expect(ConfigFileKind.of(text: "") == .policy)
        #expect(ConfigFileKind.of(text: "mode = [\n") == .policy)  // does not parse: a policy file's errors
        #expect(ConfigFileKind.of(text: "[sharing]\nx = 1\n") == .policy)  // not a daemon section

        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("samepaged.toml", "")
        #expect(ConfigFileKind.of(path: directory.file("samepaged.toml")) == .daemon)
        try directory.write("other.toml", "[scan]\nrun = \"stop\"\n")
        #expect(ConfigFileKind.of(path: directory.file("other.toml")) == .daemon)
        #expect(ConfigFileKind.daemon.validate(path: directory.file("other.toml")).isEmpty)
        #expect(ConfigFileKind.policy.validate(path: directory.file("other.toml")).count == 1)
    }

    @Test("A good configuration and policies: valid, with a summary that counts the policy files")
    func valid() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let policies = directory.file("guests.d")
        try directory.write("samepaged.toml", "[policy]\ndirectory = \"\(policies)\"\n")
        try makeDirectory(policies)
        try directory.write("guests.d/web.toml", "mode = \"merge\"\n")
        try directory.write("guests.d/default.toml", "mode = \"report\"\n")
        let check = ConfigurationCheck.run(configuration: directory.file("samepaged.toml"))
        #expect(check.isValid)
        #expect(check.summary == "\(directory.path)/samepaged.toml: ok; \(policies): 2 policy files ok")
    }

    @Test("Every error of the configuration file, with its line; the policies are not looked at then")
    func invalidConfiguration() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("samepaged.toml", "[scan]\nrun = \"fast\"\n[libvirt]\nurl = \"x\"\n")
        let check = ConfigurationCheck.run(configuration: directory.file("samepaged.toml"))
        #expect(!check.isValid)
        #expect(check.errors.map(\.line) == [2, 4])
        #expect(check.errors.allSatisfy { $0.file == directory.file("samepaged.toml") })
        #expect(check.policyDirectory == nil)
    }

    @Test("A bad policy file fails the check; --policy-dir overrides the file's directory")
    func invalidPolicy() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try makeDirectory(directory.file("other.d"))
        try directory.write("other.d/db.toml", "mode = \"merge\"\nmax_pause_ms = 5000\n")
        let check = ConfigurationCheck.run(
            configuration: nil, policyDirectory: directory.file("other.d"), defaultPath: directory.file("none.toml"))
        #expect(check.configurationFileExists == false)
        #expect(check.errors.count == 1)
        #expect(check.errors.first?.file == directory.file("other.d/db.toml"))
        #expect(check.errors.first?.line == 2)
    }

    @Test("A missing default file means the built-in defaults; a missing --config is an error")
    func missing() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let none = directory.file("none.toml")
        let defaults = ConfigurationCheck.run(
            configuration: nil, policyDirectory: directory.file("empty.d"), defaultPath: none)
        #expect(defaults.isValid)
        #expect(defaults.summary == "no \(none): built-in defaults; \(directory.path)/empty.d: 0 policy files ok")
        let named = ConfigurationCheck.run(configuration: none)
        #expect(named.errors == [ConfigError(file: none, message: "cannot open: No such file or directory")])
    }

    private func makeDirectory(_ path: String) throws {
        guard mkdir(path, 0o755) == 0 else { throw ConfigError(file: path, message: "mkdir failed") }
    }
}

import SamepageModel
import Testing
import TestSupport
@testable import SamepageConfig

@Suite struct PolicyDirectoryTests {
    let web = GuestIdentity(name: "web1", uuid: "6f1c1f3e-5d0e-4a3b-9b7a-0c4e2d1f8a90")
    let db = GuestIdentity(name: "db1", uuid: "11111111-2222-3333-4444-555555555555")
    let other = GuestIdentity(name: "other", uuid: "99999999-8888-7777-6666-555555555555")
    let configured = GuestPolicy(mode: .report, trustGroup: "configured")

    @Test func precedence() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("\(web.uuid).toml", "mode = \"merge\"\ntrust_group = \"by-uuid\"")
        try directory.write("web1.toml", "mode = \"zero\"")
        try directory.write("db1.toml", "mode = \"zero\"\ntrust_group = \"by-name\"")
        try directory.write("default.toml", "mode = \"report\"\ntrust_group = \"by-default\"")

        let policies = PolicyDirectory(directory: directory.path, defaultPolicy: configured)
        #expect(policies.reload() == [])

        // The UUID file beats the name file ...
        let forWeb = policies.policy(for: web)
        #expect(forWeb.policy.trustGroup == "by-uuid")
        #expect(forWeb.source == directory.file("\(web.uuid).toml"))
        // ... the name file beats default.toml ...
        #expect(policies.policy(for: db).policy.trustGroup == "by-name")
        #expect(policies.policy(for: db).source == directory.file("db1.toml"))
        // ... which applies to the rest, ...
        #expect(policies.policy(for: other).policy == GuestPolicy(mode: .report, trustGroup: "by-default"))
        #expect(policies.policy(for: other).source == directory.file("default.toml"))
        // ... and without it, the configured default.
        try directory.remove("default.toml")
        #expect(policies.reload() == [])
        #expect(policies.policy(for: other).policy == configured)
        #expect(policies.policy(for: other).source == nil)
        #expect(policies.entries.map(\.file) == [directory.file("\(web.uuid).toml"), directory.file("db1.toml"), directory.file("web1.toml")].sorted())
    }

    @Test func notReadUntilReloaded() {
        let policies = PolicyDirectory(directory: "/nonexistent/samepage", defaultPolicy: configured)
        #expect(policies.policy(for: web).policy == configured)
        #expect(policies.directory == "/nonexistent/samepage")
        #expect(policies.defaultPolicy == configured)
    }

    @Test func uuidFileNamesInAnyCase() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("\(web.uuid.uppercased()).toml", "mode = \"merge\"")
        let policies = PolicyDirectory(directory: directory.path)
        #expect(policies.reload() == [])
        #expect(policies.policy(for: web).policy.mode == .merge)

        // Two files for the same UUID: the first by name wins, the other is reported.
        try directory.write("\(web.uuid).toml", "mode = \"zero\"")
        let errors = policies.reload()
        #expect(errors.map(\.file) == [directory.file("\(web.uuid).toml")])
        #expect(errors.first?.message == "ignored: \(directory.file("\(web.uuid.uppercased()).toml")) applies to the same guest")
        #expect(policies.policy(for: web).policy.mode == .merge)
    }

    @Test func aGuestNamedAfterAnotherGuestsUUIDDoesNotGetItsPolicy() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("\(web.uuid).toml", "mode = \"merge\"\ntrust_group = \"web-only\"")
        let policies = PolicyDirectory(directory: directory.path, defaultPolicy: configured)
        #expect(policies.reload() == [])

        // The guest with that UUID gets it, whatever the case of the UUID it is reported with.
        #expect(policies.policy(for: web) == (GuestPolicy(mode: .merge, trustGroup: "web-only"), directory.file("\(web.uuid).toml")))
        let webUpper = GuestIdentity(name: "web1", uuid: web.uuid.uppercased())
        #expect(policies.policy(for: webUpper).policy.trustGroup == "web-only")

        // A guest named after that UUID, in any case, does not.
        let impostors = [web.uuid, web.uuid.uppercased()].map { GuestIdentity(name: $0, uuid: other.uuid) }
        for impostor in impostors {
            #expect(policies.policy(for: impostor) == (configured, nil), "\(impostor.name)")
        }
        // Nor when the file's name is in upper case.
        try directory.remove("\(web.uuid).toml")
        try directory.write("\(web.uuid.uppercased()).toml", "mode = \"merge\"\ntrust_group = \"web-only\"")
        try directory.write("default.toml", "mode = \"report\"")
        #expect(policies.reload() == [])
        #expect(policies.policy(for: web).policy.trustGroup == "web-only")
        for impostor in impostors {
            #expect(policies.policy(for: impostor) == (GuestPolicy(mode: .report), directory.file("default.toml")), "\(impostor.name)")
        }

        // A guest with a UUID-shaped name is reached through its own UUID file.
        try directory.write("\(other.uuid).toml", "mode = \"zero\"")
        #expect(policies.reload() == [])
        #expect(policies.policy(for: impostors[0]) == (GuestPolicy(mode: .zero), directory.file("\(other.uuid).toml")))
    }

    @Test func namesAreCaseSensitive() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("Web1.toml", "mode = \"merge\"")
        let policies = PolicyDirectory(directory: directory.path)
        policies.reload()
        #expect(policies.policy(for: web).policy.mode == .off)
        #expect(policies.policy(for: GuestIdentity(name: "Web1", uuid: web.uuid)).policy.mode == .merge)
    }

    @Test func otherFilesAreIgnored() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        for name in ["notes.txt", "web1.toml~", ".web1.toml.swp", ".web1.toml", "example.toml.sample", ".toml", "README"] {
            try directory.write(name, "\u{1}garbage = = =\n")
        }
        try directory.write("not-running-yet.toml", "mode = \"merge\"")
        let policies = PolicyDirectory(directory: directory.path)
        #expect(policies.reload() == [])
        #expect(policies.policy(for: web).source == nil)
        #expect(policies.entries.map(\.file) == [directory.file("not-running-yet.toml")])
    }

    @Test func aDirectoryNamedLikeAPolicyIsAnError() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try FileManager.default.createDirectory(atPath: directory.file("web1.toml"), withIntermediateDirectories: false)
        let policies = PolicyDirectory(directory: directory.path)
        #expect(policies.reload().map(\.description) == ["\(directory.file("web1.toml")): cannot read: a directory"])
        #expect(policies.policy(for: web).source == nil)
    }

    @Test func reloadKeepsTheLastGoodPolicy() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("web1.toml")
        try directory.write("web1.toml", "mode = \"merge\"\ntrust_group = \"web\"\n")
        try directory.write("default.toml", "mode = \"report\"")
        let policies = PolicyDirectory(directory: directory.path, defaultPolicy: configured)
        #expect(policies.reload() == [])
        let good = GuestPolicy(mode: .merge, trustGroup: "web")
        #expect(policies.policy(for: web).policy == good)

        // The file turns bad: rejected, errors returned with file:line, last good policy kept.
        try directory.write("web1.toml", "mode = \"merge\"\ntrust_group = \"web\"\nmax_pause_ms = 0\nmdoe = 1\n")
        let errors = policies.reload()
        #expect(errors.map(\.description) == [
            "\(path):3: max_pause_ms = 0 is out of range: expected 1 to 1000",
            "\(path):4: unknown key \"mdoe\"; did you mean \"mode\"?",
        ])
        #expect(policies.errors == errors)
        #expect(policies.policy(for: web) == (good, path))
        #expect(policies.entries.first { $0.file == path } == PolicyDirectory.Entry(file: path, policy: good, errors: errors))

        // Still bad at the next reload: still the last good one.
        try directory.write("web1.toml", "this is not TOML")
        #expect(policies.reload().map(\.line) == [1])
        #expect(policies.policy(for: web).policy == good)

        // Fixed: the new policy applies and the errors are gone.
        try directory.write("web1.toml", "mode = \"zero\"")
        #expect(policies.reload() == [])
        #expect(policies.errors == [])
        #expect(policies.policy(for: web).policy == GuestPolicy(mode: .zero))

        // Removed: the guest falls back to default.toml.
        try directory.remove("web1.toml")
        #expect(policies.reload() == [])
        #expect(policies.policy(for: web).policy.mode == .report)

        // Back, but bad from the start: no last good policy from this file, so default.toml.
        try directory.write("web1.toml", "mode = \"merge\"\nmax_pages = -1")
        #expect(policies.reload().map(\.line) == [2])
        #expect(policies.policy(for: web) == (GuestPolicy(mode: .report), directory.file("default.toml")))
    }

    @Test func aBadUUIDFileFallsThroughToTheNameFile() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("web1.toml", "mode = \"zero\"")
        try directory.write("\(web.uuid).toml", "mode = \"merge")
        let policies = PolicyDirectory(directory: directory.path)
        #expect(policies.reload().map(\.file) == [directory.file("\(web.uuid).toml")])
        #expect(policies.policy(for: web) == (GuestPolicy(mode: .zero), directory.file("web1.toml")))
    }

    @Test func defaultTomlKeepsItsLastGoodPolicyToo() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("default.toml", "mode = \"report\"")
        let policies = PolicyDirectory(directory: directory.path, defaultPolicy: configured)
        policies.reload()
        try directory.write("default.toml", "mode = \"reportt\"")
        #expect(policies.reload().map(\.line) == [1])
        #expect(policies.policy(for: other) == (GuestPolicy(mode: .report), directory.file("default.toml")))
    }

    @Test func missingDirectoryIsEmpty() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("web1.toml", "mode = \"zero\"")
        let policies = PolicyDirectory(directory: directory.file("guests.d"), defaultPolicy: configured)
        #expect(policies.reload() == [])
        #expect(policies.policy(for: web) == (configured, nil))
        #expect(policies.entries.isEmpty)
    }

    @Test func unreadableDirectoryIsAnErrorAndChangesNothing() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try FileManager.default.createDirectory(atPath: directory.file("guests.d"), withIntermediateDirectories: false)
        try directory.write("guests.d/web1.toml", "mode = \"zero\"")
        let policies = PolicyDirectory(directory: directory.file("guests.d"))
        #expect(policies.reload() == [])
        #expect(policies.policy(for: web).policy.mode == .zero)

        // Replace the directory by a file: it cannot be listed (ENOTDIR, as EACCES would for a
        // non-root reader), so everything stays as it was.
        try FileManager.default.removeItem(atPath: directory.file("guests.d"))
        try directory.write("guests.d", "not a directory")
        let errors = policies.reload()
        #expect(errors.map(\.description) == ["\(directory.file("guests.d")): cannot read policy directory: Not a directory"])
        #expect(policies.policy(for: web).policy.mode == .zero)
    }

    @Test func reconfigure() throws {
        let first = try TemporaryDirectory()
        let second = try TemporaryDirectory()
        defer {
            first.remove()
            second.remove()
        }
        try first.write("web1.toml", "mode = \"zero\"")
        try second.write("db1.toml", "mode = \"merge\"")
        let policies = PolicyDirectory(directory: first.path)
        policies.reload()
        #expect(policies.policy(for: web).policy.mode == .zero)

        #expect(policies.reconfigure(directory: second.path, defaultPolicy: configured) == [])
        #expect(policies.policy(for: web) == (configured, nil))
        #expect(policies.policy(for: db).policy.mode == .merge)

        // Same directory, new default: files and their last good policies stay.
        try second.write("db1.toml", "mode = 7")
        let other = GuestPolicy(mode: .zero)
        #expect(policies.reconfigure(directory: second.path, defaultPolicy: other).count == 1)
        #expect(policies.policy(for: db).policy.mode == .merge)
        #expect(policies.policy(for: web) == (other, nil))
    }

    @Test func readersRaceReloads() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("web1.toml", "mode = \"zero\"")
        try directory.write("default.toml", "mode = \"report\"")
        let policies = PolicyDirectory(directory: directory.path)
        policies.reload()
        let web = self.web
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for round in 0..<50 {
                    try? directory.write("web1.toml", round % 2 == 0 ? "mode = \"merge\"" : "mode = 5")
                    policies.reload()
                }
            }
            for _ in 0..<2 {
                group.addTask {
                    for _ in 0..<2000 {
                        let mode = policies.policy(for: web).policy.mode
                        #expect(mode == .zero || mode == .merge)
                    }
                }
            }
        }
    }

    @Test func uuidShapes() {
        #expect(PolicyDirectory.isUUID("6f1c1f3e-5d0e-4a3b-9b7a-0c4e2d1f8a90"))
        #expect(PolicyDirectory.isUUID("6F1C1F3E-5D0E-4A3B-9B7A-0C4E2D1F8A90"))
        #expect(!PolicyDirectory.isUUID("6f1c1f3e5d0e4a3b9b7a0c4e2d1f8a90"))
        #expect(!PolicyDirectory.isUUID("6f1c1f3e-5d0e-4a3b-9b7a-0c4e2d1f8a9g"))
        #expect(!PolicyDirectory.isUUID("web1"))
    }
}

import Foundation

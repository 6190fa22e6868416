import Glibc
import Foundation

/// The project's own test-host scripts (scripts/testhost), driven from the tests: real
/// libvirtd, real QEMU guests with shared-memory RAM.
enum TestHost {
    /// The repository: this file is Tests/EndToEndTests/Support/TestHost.swift.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let scripts = root.appendingPathComponent("scripts/testhost")
    static let stateDirectory = ProcessInfo.processInfo.environment["SAMEPAGE_TESTHOST_DIR"] ?? "/var/lib/samepage-testhost"

    struct ScriptFailed: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs a test-host script and returns its output; throws with the output on failure.
    @discardableResult
    static func script(_ name: String, _ arguments: [String]) throws -> String {
        let result = try run(scripts.appendingPathComponent(name).path, arguments)
        guard result.status == 0 else {
            throw ScriptFailed(description: "\(name) \(arguments.joined(separator: " ")) failed (\(result.status)):\n\(result.output)")
        }
        return result.output
    }

    /// Runs a program to completion; returns its exit status and its output (stdout and
    /// stderr together).
    static func run(_ path: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let outputPath = "/tmp/samepage-e2e-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).log"
        defer { unlink(outputPath) }
        let pid = try spawn(path, arguments, output: outputPath)
        let status = wait(pid)
        return (status, (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "")
    }

    /// Starts a program with its output (stdout and stderr) going to a file.
    ///
    /// A file, not a pipe: setup.sh may start libvirtd, which keeps inherited descriptors
    /// open long after the script exits. And a clean signal mask: the test's threads block
    /// signals, and a libvirtd that inherited that would ignore SIGTERM.
    static func spawn(_ path: String, _ arguments: [String], output: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t(), allSignals = sigset_t()
        sigemptyset(&noSignals)
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for arg in argv { free(arg) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, &actions, &attributes, argv, environ)
        guard spawned == 0 else { throw ScriptFailed(description: "cannot run \(path): errno \(spawned)") }
        return pid
    }

    /// Waits for a child; its exit status, or 128 + the signal that ended it.
    static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    }

    static func guest(_ arguments: String...) throws -> String { try script("guest.sh", arguments) }

    /// Defines and starts a 256 MiB guest and waits until it booted and wrote its fill.
    /// `virtiofs`: guest.sh's virtiofs options (`--virtiofs DIR`, `--virtiofs-socket PATH`); the
    /// guest then also waits until it mounted the share.
    /// `ram`: guest.sh's `--ram` (memfd, file, anonymous), or `hugepages` for `--hugepages`.
    static func startGuest(
        _ name: String, ram: String, memory: Int = 256, fill: Int = 0, seed: String? = nil, workload: String = "idle",
        virtiofs: [String] = []
    ) throws {
        let backing = ram == "hugepages" ? ["--hugepages"] : ["--ram", ram]
        var arguments = ["define", name, "--memory", "\(memory)"] + backing + ["--workload", workload, "--start"] + virtiofs
        if fill > 0 { arguments += ["--fill", "\(fill)"] }
        if let seed { arguments += ["--fill-seed", seed] }
        try script("guest.sh", arguments)
        try script("guest.sh", ["wait-ready", name, "120"])
        if fill > 0 { try script("guest.sh", ["wait-for", name, "SAMEPAGE-FILL-DONE", "120"]) }
        if workload == "dataset" { try script("guest.sh", ["wait-for", name, "SAMEPAGE-DATASET-HASH", "120"]) }
        if !virtiofs.isEmpty { try script("guest.sh", ["wait-for", name, "SAMEPAGE-VIRTIOFS-OK", "120"]) }
    }

    /// The guest's serial console so far.
    static func serial(_ name: String) -> String {
        (try? String(contentsOfFile: "\(stateDirectory)/serial/\(name).log", encoding: .utf8)) ?? ""
    }

    /// Destroys and undefines guests, ignoring ones already gone.
    static func removeGuests(_ names: [String]) {
        for name in names { _ = try? script("guest.sh", ["undefine", name]) }
    }

    static func qemuPID(_ name: String) throws -> pid_t {
        pid_t(try guest("pid", name).trimmingCharacters(in: .whitespacesAndNewlines))!
    }

    /// Host `Shmem` from /proc/meminfo, in bytes.
    static func shmemBytes() -> Int { meminfo("Shmem") * 1024 }

    /// A field of /proc/meminfo, as the number it shows (kB for sizes, a count for huge pages).
    static func meminfo(_ field: String) -> Int {
        let text = try! String(contentsOfFile: "/proc/meminfo", encoding: .utf8)
        let line = text.split(separator: "\n").first { $0.hasPrefix(field + ":") }!
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])!
    }

    /// The pid of the libvirtd that setup.sh started ("pid starttime" in its state file).
    static func libvirtdPID() -> pid_t? {
        guard let text = try? String(contentsOfFile: "\(stateDirectory)/libvirtd.pid", encoding: .utf8) else { return nil }
        return text.split(separator: " ").first.flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }
}

import Glibc
import Foundation

/// A samepaged started by a test, with its own socket, policy directory and log.
final class DaemonProcess {
    static let products = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    static var samepaged: String { products.appendingPathComponent("samepaged").path }
    static var samepage: String { products.appendingPathComponent("samepage").path }

    let directory: String
    var socket: String { "\(directory)/samepaged.sock" }
    var policies: String { "\(directory)/guests.d" }
    var configFile: String { "\(directory)/samepaged.toml" }
    var logFile: String { "\(directory)/samepaged.log" }
    private(set) var pid: pid_t = 0

    init(config: String) throws {
        directory = "/tmp/samepage-e2e-daemon-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        mkdir(directory, 0o755)
        mkdir(policies, 0o755)
        try config.write(toFile: configFile, atomically: true, encoding: .utf8)
    }

    var arguments: [String] {
        ["--config", configFile, "--socket", socket, "--policy-dir", policies, "--pause-journal", "\(directory)/paused.json"]
    }

    func start() throws {
        pid = try TestHost.spawn(Self.samepaged, arguments, output: logFile)
        guard eventually(timeout: .seconds(20), { access(socket, F_OK) == 0 }) else {
            throw TestHost.ScriptFailed(description: "samepaged did not open its socket:\n\(log)")
        }
    }

    /// SIGKILL, as a crash would end it.
    func kill9() {
        guard pid > 0 else { return }
        kill(pid, SIGKILL)
        _ = TestHost.wait(pid)
        pid = 0
    }

    /// SIGTERM, then the exit status.
    func stop() -> Int32 {
        guard pid > 0 else { return 0 }
        kill(pid, SIGTERM)
        defer { pid = 0 }
        let status = TestHost.wait(pid)
        // The log goes with the directory: what a failed stop said is kept in the test's output.
        if status != 0 { print("samepaged (pid \(pid)) exited with status \(status); its log ends:\n\(log.suffix(6000))") }
        return status
    }

    var log: String { (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "" }

    /// Runs `samepage --socket SOCKET ARGS...`.
    func cli(_ arguments: String...) throws -> (status: Int32, output: String) {
        try TestHost.run(Self.samepage, ["--socket", socket] + arguments)
    }

    /// Runs a reading command with `--json` and parses its output.
    func json(_ arguments: String...) throws -> Any {
        let result = try TestHost.run(Self.samepage, ["--socket", socket] + arguments + ["--json"])
        guard result.status == 0 else { throw TestHost.ScriptFailed(description: "samepage \(arguments): \(result.output)") }
        return try JSONSerialization.jsonObject(with: Data(result.output.utf8))
    }

    func guests() throws -> [[String: Any]] { try json("list") as! [[String: Any]] }
    func stats() throws -> [String: Any] { try json("stats") as! [String: Any] }
    func guest(_ name: String) throws -> [String: Any]? { try guests().first { $0["name"] as? String == name } }

    func writePolicy(_ name: String, _ text: String) throws {
        try text.write(toFile: "\(policies)/\(name).toml", atomically: true, encoding: .utf8)
    }

    deinit {
        _ = stop()
        _ = try? FileManager.default.removeItem(atPath: directory)
    }
}

let daemonConfig = """
    [metrics]
    address = ""
    [scan]
    advisor_mode = "none"
    pages_to_scan = 2000
    sleep_millisecs = 10
    max_page_sharing = 0
    smart_scan = false
    [policy.default]
    mode = "off"
    [reclaim]
    # Tests of what reclaim does, not of when: deferral for CPU pressure is off here (the
    # test machine's own load would make its timing theirs) and tested on its own in
    # BusyHostEndToEndTests.
    max_cpu_pressure = 100
    """

let reportPolicy = "mode = \"report\"\ntrust_group = \"e2e\"\n"

func int(_ value: Any?) -> Int { (value as? NSNumber)?.intValue ?? -1 }

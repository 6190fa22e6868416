import Glibc
import LinuxSystem
import Foundation
import SamepageCore
import SamepageModel
import Synchronization
@testable import SamepageControl

/// Canned answers to every command, as a daemon would give them.
enum Sample {
    static let regions: [RegionStatus] = try! JSONDecoder().decode(
        [RegionStatus].self,
        from: Data(
            #"""
            [{"backend":"pc.ram","kind":"memfd","path":"/memfd:pc.ram (deleted)","bytes":1073741824,"pages":262144},
             {"backend":"ram-node1","kind":"hugetlbfs","bytes":2097152,"pages":1}]
            """#.utf8))

    static var facts: GuestFacts {
        var facts = GuestFacts()
        facts.backing = "memfd"
        facts.access = "shared"
        facts.hugepageSizesKiB = [2048]
        facts.vhostUser = ["virtiofs /run/vfs.sock"]
        facts.otherMappers = try! JSONDecoder().decode(
            [MapperProcess].self, from: Data(#"[{"pid":4242,"command":"virtiofsd"}]"#.utf8))
        return facts
    }

    static var counters: Counters {
        var counters = Counters()
        counters.pagesShared = 10
        counters.pagesSharing = 25
        counters.pagesUnshared = 300
        counters.pagesVolatile = 7
        counters.fullScans = 3
        counters.pagesScanned = 786_432
        counters.pagesSkipped = 12
        counters.zeroPages = 200_000
        counters.mergesRefused = 1
        return counters
    }

    static let alpha = GuestStatus(
        name: "alpha", uuid: "8f0e2a52-1111-4a7e-9d7c-3f6b1c0e0001", state: "running", mapped: true, mode: .merge,
        trustGroup: "web", backend: "memfd", counters: counters, regions: regions, facts: facts)
    static let beta = GuestStatus(
        name: "beta", uuid: "8f0e2a52-1111-4a7e-9d7c-3f6b1c0e0002", state: "paused", mapped: false,
        reason: "policy mode is off", mode: .off)

    static let stats = {
        var stats = DaemonStats(
            counters: counters, run: .merge,
            tunables: Tunables(pagesToScan: 1000, sleepMillisecs: 20, maxKernelPages: 0, maxPageSharing: 256, smartScan: true),
            trackingBytes: 1 << 20, lastFullScan: FullScanTime(seconds: 12.5, cpuPercent: 8.25), connected: true,
            guests: 2, guestsMapped: 1)
        stats.guestRAMBytes = 1 << 30
        stats.kernelKSM.governed = true
        stats.kernelKSM.trustGroup = "web"
        stats.kernelKSM.run = 1
        stats.kernelKSM.why = "MemAvailable is 12.0% of MemTotal, below 20%"
        stats.kernelKSM.pagesSharing = 5000
        stats.kernelKSM.ksmZeroPages = 1200
        stats.kernelKSM.generalProfit = 24_000_000
        stats.kernelKSM.advisorMode = "scan-time"
        return stats
    }()

    static let policies = [
        GuestPolicyInfo(
            name: "alpha", uuid: alpha.uuid, source: "/etc/samepage/guests.d/alpha.toml",
            policy: GuestPolicy(mode: .merge, trustGroup: "web", maxPages: 1000)),
        GuestPolicyInfo(name: "beta", uuid: beta.uuid, source: nil, policy: GuestPolicy()),
    ]

    static let sharing = SharingMatrix(
        guests: [GuestIdentity(name: "alpha", uuid: alpha.uuid), GuestIdentity(name: "beta", uuid: beta.uuid)],
        stableNodes: [[10, 4], [4, 0]])

    /// Advice with every part present: modes, private RAM, huge pages, balloon.
    static let advice = GuestAdvice(
        name: "alpha", uuid: alpha.uuid, mode: .merge, privateRAM: false,
        modes: [
            .init(mode: .off, wouldFreeBytes: 0, eligible: false, why: "never read: frees nothing, finds nothing"),
            .init(mode: .zero, wouldFreeBytes: 4 << 20, eligible: true, why: "zero pages given back in short pauses of the guest"),
        ],
        zeroBytesLeft: 4 << 20, privateRAMWouldSave: .init(duplicateBytes: 1 << 20, zeroBytes: 4 << 20),
        hugePages: HugePageZeroes(pagesPerHugePage: 512, hugePages: 128, allZero: 2, partlyZero: 1, strandedZeroPages: 7),
        balloon: Balloon(model: "virtio", freePageReporting: true))

    static let reload = PolicyReloadReport(errors: ["/etc/samepage/guests.d/beta.toml:3: unknown key \"mod\""])
}

/// A daemon stand-in: answers every command from ``Sample`` and records what it was asked.
final class FakeDaemon: ControlHandler {
    let requests = Mutex<[ControlRequest]>([])
    let tunables = Mutex(Sample.stats.tunables)
    let kernelKSM = Mutex(KernelKSMConfiguration(enabled: true, trustGroup: "web"))

    func handle(_ request: ControlRequest, from peer: ControlPeer) -> ControlResponse {
        requests.withLock { $0.append(request) }
        switch request {
        case .list:
            return .success(.guests([Sample.alpha, Sample.beta]))
        case .dominfo(let guest):
            guard let info = [Sample.alpha, Sample.beta].first(where: { $0.name == guest || $0.uuid == guest }) else {
                return .failure(.unknownGuest, "no guest named \(guest)")
            }
            return .success(.guest(info))
        case .stats:
            return .success(.stats(Sample.stats))
        case .run(let mode):
            return .success(.run(mode))
        case .tune(let changes):
            do {
                return .success(.tunables(try tunables.withLock { tunables throws(ControlFailure) in
                    tunables = try changes.applied(to: tunables)
                    return tunables
                }))
            } catch {
                return .failure(error)
            }
        case .ksmTune(let changes):
            do {
                var status = Sample.stats.kernelKSM
                status.configuration = try kernelKSM.withLock { configuration throws(ControlFailure) in
                    configuration = try changes.applied(to: configuration)
                    return configuration
                }
                return .success(.kernelKSM(status))
            } catch {
                return .failure(error)
            }
        case .policyShow(let guest):
            let policies = Sample.policies.filter { guest == nil || $0.name == guest || $0.uuid == guest }
            guard !policies.isEmpty else { return .failure(.unknownGuest, "no guest named \(guest ?? "")") }
            return .success(.policies(policies))
        case .policyReload:
            return .success(.policyReload(Sample.reload))
        case .sharing:
            return .success(.sharing(Sample.sharing))
        case .version:
            return .success(.version(VersionInfo(daemon: "0.1")))
        case .advise(let guest):
            guard guest == nil || guest == "alpha" || guest == Sample.alpha.uuid else {
                return .failure(.unknownGuest, "no guest named \(guest ?? "")")
            }
            return .success(.advice([Sample.advice]))
        }
    }
}

/// A directory under /tmp removed with everything in it when dropped.
final class TemporaryDirectory {
    let path: String

    init(mode: mode_t = 0o700) {
        var template = Array("/tmp/samepage-control-XXXXXX".utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        chmod(path, mode)
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// A bare client connection for sending arbitrary bytes.
final class RawConnection {
    private let socket: UnixSocket
    private var reader = LineReader(limit: 64 << 20)

    init(path: String, timeout: Duration = .seconds(10)) throws {
        socket = try UnixSocket.controlStream()
        socket.setTimeouts(receive: timeout, send: timeout)
        if let error = socket.connect(to: try UnixSocketAddress(path: path))?.rawValue {
            throw ControlError.system(operation: "connect", errno: error)
        }
    }

    /// Sends bytes; returns the errno of a failure.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Int32? { socket.sendAll(bytes)?.rawValue }

    func send(_ text: String) { send(Array(text.utf8)) }

    /// The next line, or nil at the end of the stream (or on a timeout).
    func readLine() -> String? {
        switch reader.next(from: socket) {
        case .line(let line): return String(decoding: line, as: UTF8.self)
        default: return nil
        }
    }

    /// The next line as a JSON object.
    func readObject() -> [String: Any]? {
        guard let line = readLine() else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
    }

    /// What reading gives next.
    func next() -> LineRead { reader.next(from: socket) }

    /// Whether the server has closed the connection (end of stream or reset).
    func isClosed() -> Bool {
        switch reader.next(from: socket) {
        case .end, .failed: return true
        default: return false
        }
    }
}

/// The error object of a response line.
func errorCode(_ object: [String: Any]?) -> String? {
    (object?["error"] as? [String: Any])?["code"] as? String
}

/// Runs a tiny Python client as another user: connects to `socket`, sends one `version`
/// request, prints the first line it gets back (or `ERROR <errno>`).
func runPythonClient(socket: String, asUser user: [String]) throws -> String {
    let script = """
        import socket, sys
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect(sys.argv[1])
        except OSError as e:
            print("ERROR", e.errno); sys.exit(0)
        try:
            s.sendall(b'{"version":1,"id":7,"command":"version"}\\n')
        except OSError:
            pass
        print(s.makefile("rb").readline().decode().strip())
        """
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
    process.arguments = user + ["/usr/bin/python3", "-c", script, socket]
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

// The scale benchmark: many guests through the daemon's path, and how its costs grow.
//
//   swift build -c release --product ScaleBenchmark
//   .build/release/ScaleBenchmark [--guests 8,16,32,64] [--mib-per-guest 256] [--max-passes 6] [--runs 5]
//
// For each guest count N: N memfd guests of S MiB (Fleet.swift: duplicates across all guests
// and within roles, near-duplicates, zero pages, holes), read as the daemon reads them, one
// trust group, scanned by the engine until its counters are the expected ones and stay so.
// Reported: pages per second per core (the process's CPU time, not wall time), tracking bytes
// per resident page (the engine's own count, and the growth of the process's RssAnon from just
// before the engine was made), and the daemon's path (DaemonPath.swift): building the
// snapshot, encoding `list`, computing and encoding `sharing` (N × N), one /metrics scrape.
// The default (64 × 256 MiB) needs 16 GiB of RAM for the guests. Run as root (map_files).
import BenchmarkSupport
import Foundation
import GuestMemory
import SamepageCore
import SamepageModel

struct Options {
    var guests = [8, 16, 32, 64]
    var mibPerGuest = 256
    var maxPasses = 6
    var runs = 5
    /// Run the one guest count given, report it, and print its result as JSON (for the parent).
    var child = false

    init(_ arguments: [String]) {
        var i = 1
        func value() -> String {
            i += 1
            guard i < arguments.count else { fatalError("\(arguments[i - 1]) needs a value") }
            return arguments[i]
        }
        while i < arguments.count {
            switch arguments[i] {
            case "--guests": guests = value().split(separator: ",").map { Int($0)! }
            case "--mib-per-guest": mibPerGuest = Int(value())!
            case "--max-passes": maxPasses = Int(value())!
            case "--runs": runs = Int(value())!
            case "--child": child = true
            default: fatalError("unknown argument \(arguments[i]) (see the comment at the top of main.swift)")
            }
            i += 1
        }
        precondition(guests.allSatisfy { (1...255).contains($0) }, "1 to 255 guests")
        precondition(mibPerGuest >= 1 && maxPasses >= 3 && runs >= 1)
    }
}

struct Pass: Codable {
    var cpu: Double, wall: Double, pages: Int
    var counts: Expected
}

struct Result: Codable {
    var guests: Int
    var pages: Int
    var expected: Expected
    var passes: [Pass]
    var trackingBytes: Int
    var anonBytes: Int
    var costs: DaemonPathCosts
    var fillSeconds: Double

    var converged: Bool { passes.last?.counts == expected }
    /// The pass (1-based) after which the counts were the expected ones.
    var passesToConverge: Int { (passes.firstIndex { $0.counts == expected } ?? passes.count) + 1 }
    func bytesPerPage(_ bytes: Int) -> String { String(format: "%.1f", Double(bytes) / Double(expected.resident)) }
}

let options = Options(CommandLine.arguments)
let tunables = Tunables(pagesToScan: 20_000, sleepMillisecs: 0, maxPageSharing: 256, smartScan: false)

func run(guests n: Int) throws -> Result {
    let pagesPerGuest = options.mibPerGuest * 256
    let expected = Expected(guests: n, pagesPerGuest: pagesPerGuest, maxPageSharing: tunables.maxPageSharing)
    let fillStart = wallSeconds()
    let fleet = try Fleet(guests: n, pagesPerGuest: pagesPerGuest)
    let fillSeconds = wallSeconds() - fillStart

    let anonBefore = anonymousResidentBytes()
    let engine = try Engine(tunables: tunables)
    let group = engine.trustGroup(named: "bench")
    var guests: [BenchGuest] = []
    for (g, region) in fleet.regions.enumerated() {
        let slot = engine.addSlot(region, options: SlotOptions(name: Fleet.name(g), trustGroup: group))!
        guests.append(BenchGuest(identity: GuestIdentity(name: Fleet.name(g), uuid: Fleet.uuid(g)), region: region, slots: [slot]))
    }

    var passes: [Pass] = []
    while passes.count < options.maxPasses {
        let cpu0 = cpuSeconds(), wall0 = wallSeconds(), scanned0 = engine.counters.pagesScanned
        let target = engine.counters.fullScans + 1
        while engine.counters.fullScans < target {
            let report = engine.scanBatch(endingFullScans: true)
            precondition(report.failures.isEmpty, "\(report.failures)")
        }
        passes.append(Pass(
            cpu: cpuSeconds() - cpu0, wall: wallSeconds() - wall0, pages: engine.counters.pagesScanned - scanned0,
            counts: Expected(engine.counters, resident: expected.resident)))
        // Steady: at least three passes, the last two at the expected counts.
        if passes.count >= 3 && passes.suffix(2).allSatisfy({ $0.counts == expected }) { break }
    }
    let anonBytes = anonymousResidentBytes() - anonBefore
    precondition(engine.rmapItems == expected.resident, "\(engine.rmapItems) rmap items for \(expected.resident) resident pages")
    let costs = measureDaemonPath(guests, engine: engine, runs: options.runs)
    let violations = engine.invariantViolations()
    precondition(violations.isEmpty, "\(violations.prefix(3))")
    return Result(
        guests: n, pages: n * pagesPerGuest, expected: expected, passes: passes, trackingBytes: engine.trackingBytes,
        anonBytes: anonBytes, costs: costs, fillSeconds: fillSeconds)
}

func ms(_ seconds: Double) -> String { String(format: "%.2f", seconds * 1000) }
func kib(_ bytes: Int) -> String { String(format: "%.0f", Double(bytes) / 1024) }

func printDetails(_ r: Result) {
    print("N = \(r.guests): \(r.pages) pages (\(r.expected.resident) resident), filled in \(String(format: "%.1f", r.fillSeconds)) s; expected \(r.expected)")
    for (i, p) in r.passes.enumerated() {
        print(String(format: "  pass %d: %d pages, %.3f s CPU, %.3f s wall, ", i + 1, p.pages, p.cpu, p.wall) + "\(p.counts)")
    }
    if !r.converged { print("  NOT CONVERGED: \(r.passes.last!.counts), expected \(r.expected)") }
}

/// Runs one guest count in a process of its own, so that its RssAnon starts from a heap no
/// earlier run has grown; passes its report through and returns its result.
func runChild(guests n: Int) throws -> Result {
    let child = Process()
    child.executableURL = URL(fileURLWithPath: "/proc/self/exe")
    child.arguments = ["--guests", "\(n)", "--mib-per-guest", "\(options.mibPerGuest)", "--max-passes", "\(options.maxPasses)",
                       "--runs", "\(options.runs)", "--child"]
    let pipe = Pipe()
    child.standardOutput = pipe
    try child.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    child.waitUntilExit()
    precondition(child.terminationStatus == 0 || child.terminationStatus == 1, "the run of \(n) guests failed")
    let marker = "RESULT "
    guard let line = output.split(separator: "\n").last(where: { $0.hasPrefix(marker) }) else { fatalError("no result from the run of \(n) guests") }
    return try JSONDecoder().decode(Result.self, from: Data(line.dropFirst(marker.count).utf8))
}

if options.child {
    let r = try run(guests: options.guests[0])
    printDetails(r)
    print("RESULT " + String(decoding: try JSONEncoder().encode(r), as: UTF8.self))
    exit(r.converged ? 0 : 1)
}

print("Scale benchmark: \(options.guests.map(String.init).joined(separator: ", ")) guests × \(options.mibPerGuest) MiB, "
      + "one trust group, pages_to_scan \(tunables.pagesToScan), max_page_sharing \(tunables.maxPageSharing), smart_scan off")
var results: [Result] = []
for n in options.guests {
    let r = try runChild(guests: n)
    results.append(r)
    printDetails(r)
}

print("")
print("| guests | resident pages | pass 1 pages/s per core | pass 2 | steady | passes to converge | tracking B/page (engine) | B/page (RssAnon) |")
print("|---|---|---|---|---|---|---|---|")
for r in results {
    let steady = r.passes.dropFirst(2)
    let steadyRate = rate(steady.reduce(0) { $0 + $1.pages }, steady.reduce(0) { $0 + $1.cpu })
    print("| \(r.guests) | \(r.expected.resident) | \(rate(r.passes[0].pages, r.passes[0].cpu)) | \(rate(r.passes[1].pages, r.passes[1].cpu)) | "
          + "\(steadyRate) | \(r.passesToConverge) | \(r.bytesPerPage(r.trackingBytes)) | \(r.bytesPerPage(r.anonBytes)) |")
}
print("")
print("| guests | snapshot ms | list ms (KiB) | sharing matrix ms | sharing encode ms (KiB) | first scrape ms | scrape ms (KiB) |")
print("|---|---|---|---|---|---|---|")
for r in results {
    let c = r.costs
    print("| \(r.guests) | \(ms(c.snapshot)) | \(ms(c.list)) (\(kib(c.listBytes))) | \(ms(c.sharingMatrix)) | "
          + "\(ms(c.sharingEncode)) (\(kib(c.sharingBytes))) | \(ms(c.firstScrape)) | \(ms(c.scrape)) (\(kib(c.scrapeBytes))) |")
}
if results.contains(where: { !$0.converged }) { exit(1) }

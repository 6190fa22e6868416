// The engine benchmark: Samepage's engine and the kernel's ksmd, side by side in one run, on
// the same content.
//
//   swift run -c release EngineBenchmark [--mib-per-slot 1024] [--passes 5] [--no-kernel]
//
// Two slots of shared memory (/dev/shm files mapped MAP_SHARED by this process, as QEMU maps
// a guest's RAM), one third zero pages, one third drawn from 1024 distinct pages, one third
// unique. The engine reads them exactly as the daemon reads a guest: the backend opened
// through /proc/self/map_files, residency from mincore on an untouched mapping, contents by
// pread over resident runs. Then the same content goes into anonymous MADV_MERGEABLE memory
// for ksmd (use_zero_pages=1, smart_scan=0, pages_to_scan=20000, sleep_millisecs=0), whose
// CPU time is read from /proc.
import Glibc
import BenchmarkSupport
import Foundation
import GuestMemory
import SamepageCore

struct Options {
    var mibPerSlot = 1024
    var passes = 5
    var kernel = true

    init(_ arguments: [String]) {
        var i = 1
        while i < arguments.count {
            switch arguments[i] {
            case "--mib-per-slot": i += 1; mibPerSlot = Int(arguments[i])!
            case "--passes": i += 1; passes = Int(arguments[i])!
            case "--no-kernel": kernel = false
            default: fatalError("unknown argument \(arguments[i])")
            }
            i += 1
        }
    }
}

let options = Options(CommandLine.arguments)
let slotCount = 2
let pagesPerSlot = options.mibPerSlot * 256
let totalPages = slotCount * pagesPerSlot

// MARK: Content

/// Content id of page `k` of slot `s`: 0 for a zero page, 1...1024 for the shared pool,
/// larger for unique pages.
func contentID(slot s: Int, page k: Int) -> UInt64 {
    switch k % 3 {
    case 0: return 0
    case 1:
        var rng = SplitMix64(state: UInt64(s * pagesPerSlot + k))
        return 1 + rng.next() % 1024
    default: return 10_000 + UInt64(s * pagesPerSlot + k)
    }
}

func fillRegion(_ base: UnsafeMutableRawPointer, slot s: Int) {
    for k in 0..<pagesPerSlot { fillPage(base + k * pageSize, id: contentID(slot: s, page: k)) }
}

/// What convergence must show: contents with two or more copies across the slots.
func expectedCounts() -> (shared: Int, sharing: Int, zero: Int) {
    var copies: [UInt64: Int] = [:]
    var zero = 0
    for s in 0..<slotCount {
        for k in 0..<pagesPerSlot {
            let id = contentID(slot: s, page: k)
            if id == 0 { zero += 1 } else if id <= 1024 { copies[id, default: 0] += 1 }
        }
    }
    // Under max_page_sharing = 256, a content with n copies needs ceil(n / 256) nodes.
    var shared = 0, sharing = 0
    for (_, n) in copies where n >= 2 {
        let full = n / 256, rest = n % 256
        shared += full + (rest >= 2 ? 1 : 0)
        sharing += full * 255 + (rest >= 2 ? rest - 1 : 0)
    }
    return (shared, sharing, zero)
}

// MARK: Measurement helpers

struct PassResult {
    var cpu: Double
    var wall: Double
    var pages: Int
    var counters: (shared: Int, sharing: Int, zero: Int)
}

/// The first pass after which the counters no longer change, 1-based.
func passesToConverge(_ passes: [PassResult]) -> Int {
    guard let final = passes.last?.counters else { return 0 }
    var converged = passes.count
    for i in stride(from: passes.count - 1, through: 0, by: -1) {
        if passes[i].counters == final { converged = i + 1 } else { break }
    }
    return converged
}

// MARK: Samepage's engine

func runEngine() throws -> (passes: [PassResult], trackingBytes: Int, anonBytes: Int) {
    var writers: [(UnsafeMutableRawPointer, String)] = []
    var regions: [GuestRegion] = []
    defer {
        regions = []
        for (base, path) in writers {
            munmap(base, pagesPerSlot * pageSize)
            unlink(path)
        }
    }
    for s in 0..<slotCount {
        let path = "/dev/shm/samepage-bench-\(getpid())-\(s)"
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        precondition(fd >= 0, "open \(path): \(String(cString: strerror(errno)))")
        precondition(ftruncate(fd, off_t(pagesPerSlot * pageSize)) == 0)
        let base = mmap(nil, pagesPerSlot * pageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)!
        precondition(base != MAP_FAILED)
        close(fd)
        fillRegion(base, slot: s)
        writers.append((base, path))
    }
    let pid = getpid()
    let mappings = try MemoryMapping.read(pid: pid)
    for (s, (base, _)) in writers.enumerated() {
        let address = UInt64(UInt(bitPattern: base))
        let mapping = mappings.first { $0.addresses.lowerBound == address }!
        regions.append(try GuestRegion(mapping: mapping, of: pid, backendID: "slot\(s)"))
    }

    let anonBefore = anonymousResidentBytes()
    let engine = try Engine(tunables: Tunables(pagesToScan: 20_000, sleepMillisecs: 0, maxPageSharing: 256, smartScan: false))
    let group = engine.trustGroup(named: "bench")
    for (s, region) in regions.enumerated() {
        _ = engine.addSlot(region, options: SlotOptions(name: "slot\(s)", trustGroup: group))
    }
    var passes: [PassResult] = []
    for _ in 0..<options.passes {
        let cpu0 = cpuSeconds(), wall0 = wallSeconds(), scanned0 = engine.counters.pagesScanned
        let target = engine.counters.fullScans + 1
        while engine.counters.fullScans < target {
            let report = engine.scanBatch(endingFullScans: true)
            precondition(report.failures.isEmpty, "\(report.failures)")
        }
        let c = engine.counters
        passes.append(PassResult(
            cpu: cpuSeconds() - cpu0, wall: wallSeconds() - wall0,
            pages: c.pagesScanned - scanned0, counters: (c.pagesShared, c.pagesSharing, c.zeroPages)))
    }
    let violations = engine.invariantViolations()
    precondition(violations.isEmpty, "\(violations.prefix(3))")
    return (passes, engine.trackingBytes, anonymousResidentBytes() - anonBefore)
}

// MARK: The kernel's ksmd

let ksm = "/sys/kernel/mm/ksm/"

func readKSM(_ name: String) -> Int? {
    guard let text = try? String(contentsOfFile: ksm + name, encoding: .utf8) else { return nil }
    return Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
}

func writeKSM(_ name: String, _ value: Int) { writeKSM(name, text: "\(value)") }

func writeKSM(_ name: String, text: String) {
    let fd = open(ksm + name, O_WRONLY)
    guard fd >= 0 else { print("note: cannot open \(ksm + name)"); return }
    if write(fd, text, text.utf8.count) < 0 { print("note: writing \(text) to \(name): \(String(cString: strerror(errno)))") }
    close(fd)
}

/// The kernel's `advisor_mode` (Linux 6.8+), which reads `[none] scan-time`: the bracketed
/// one. Nil on older kernels. With the scan-time advisor on, `pages_to_scan` cannot be written.
func readAdvisorMode() -> String? {
    guard let text = try? String(contentsOfFile: ksm + "advisor_mode", encoding: .utf8),
        let open = text.firstIndex(of: "["), let close = text.firstIndex(of: "]"), open < close
    else { return nil }
    return String(text[text.index(after: open)..<close])
}

func ksmdPID() -> Int? {
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
        guard let pid = Int(entry),
            let comm = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8),
            comm.trimmingCharacters(in: .whitespacesAndNewlines) == "ksmd"
        else { continue }
        return pid
    }
    return nil
}

/// ksmd's user+system CPU seconds from /proc/PID/stat.
func ksmdCPUSeconds(_ pid: Int) -> Double {
    let stat = try! String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
    let fields = stat[stat.range(of: ")")!.upperBound...].split(separator: " ")
    // After the command: state is field 3, utime 14, stime 15 (1-based in proc(5)).
    let ticks = Double(Int(fields[11])! + Int(fields[12])!)
    return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// This process's KSM rmap items (`/proc/self/ksm_stat`). The kernel's slab caches for them
/// are merged with others here, so /proc/slabinfo can't be read; each item is a 64-byte
/// `struct ksm_rmap_item` on x86_64, stable nodes not counted.
func kernelRmapItems() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/ksm_stat", encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix("ksm_rmap_items ") {
        return Int(line.split(separator: " ")[1]) ?? 0
    }
    return 0
}

func runKernel() -> (passes: [PassResult], trackingBytes: Int)? {
    guard let pid = ksmdPID(), readKSM("run") != nil else {
        print("ksmd not available: kernel side skipped")
        return nil
    }
    let saved = ["run", "pages_to_scan", "sleep_millisecs", "use_zero_pages", "smart_scan"].compactMap { name in
        readKSM(name).map { (name, $0) }
    }
    let savedAdvisorMode = readAdvisorMode()
    writeKSM("run", 2)  // start from nothing merged
    writeKSM("run", 0)
    // A fixed rate: the kernel's advisor off, or pages_to_scan cannot be set.
    if savedAdvisorMode != nil { writeKSM("advisor_mode", text: "none") }
    writeKSM("pages_to_scan", 20_000)
    writeKSM("sleep_millisecs", 0)
    writeKSM("use_zero_pages", 1)
    writeKSM("smart_scan", 0)
    writeKSM("max_page_sharing", 256)

    let bytes = pagesPerSlot * pageSize
    var bases: [UnsafeMutableRawPointer] = []
    for s in 0..<slotCount {
        let base = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
        precondition(base != MAP_FAILED)
        _ = madvise(base, bytes, MADV_NOHUGEPAGE)
        fillRegion(base, slot: s)
        precondition(madvise(base, bytes, MADV_MERGEABLE) == 0, "MADV_MERGEABLE: \(String(cString: strerror(errno)))")
        bases.append(base)
    }
    defer {
        writeKSM("run", 2)
        for base in bases { munmap(base, bytes) }
        for (name, value) in saved where name != "run" { writeKSM(name, value) }
        // Last: turning the advisor back on resets pages_to_scan to its starting point.
        if let savedAdvisorMode, savedAdvisorMode != "none" { writeKSM("advisor_mode", text: savedAdvisorMode) }
        writeKSM("run", saved.first { $0.0 == "run" }?.1 ?? 0)
    }

    var passes: [PassResult] = []
    var scans = readKSM("full_scans")!
    var cpu = ksmdCPUSeconds(pid), wall = wallSeconds(), scanned = readKSM("pages_scanned") ?? 0
    writeKSM("run", 1)
    let deadline = wallSeconds() + 300
    var maxRmapBytes = 0
    while passes.count < options.passes && wallSeconds() < deadline {
        usleep(20_000)
        maxRmapBytes = max(maxRmapBytes, kernelRmapItems() * 64)
        let now = readKSM("full_scans")!
        guard now > scans else { continue }
        let cpuNow = ksmdCPUSeconds(pid), wallNow = wallSeconds(), scannedNow = readKSM("pages_scanned") ?? 0
        passes.append(PassResult(
            cpu: cpuNow - cpu, wall: wallNow - wall,
            pages: scannedNow > 0 ? scannedNow - scanned : totalPages * (now - scans),
            counters: (readKSM("pages_shared")!, readKSM("pages_sharing")!, readKSM("ksm_zero_pages") ?? 0)))
        (scans, cpu, wall, scanned) = (now, cpuNow, wallNow, scannedNow)
    }
    return (passes, maxRmapBytes)
}

// MARK: Report

func report(_ name: String, _ passes: [PassResult], trackingBytes: Int, extra: String = "") {
    guard let first = passes.first else { return }
    let steady = passes.dropFirst(2)
    let steadyPages = steady.reduce(0) { $0 + $1.pages }
    let steadyCPU = steady.reduce(0) { $0 + $1.cpu }
    let merge = passes.count > 1 ? passes[1] : first
    print(
        "| \(name) | \(rate(first.pages, first.cpu)) | \(rate(merge.pages, merge.cpu)) | \(rate(steadyPages, steadyCPU)) | "
            + String(format: "%.1f", Double(trackingBytes) / Double(totalPages))
            + " | \(passesToConverge(passes)) | \(passes.last!.counters.shared) / \(passes.last!.counters.sharing) / \(passes.last!.counters.zero) |\(extra)")
}

print("Fleet: \(slotCount) slots × \(options.mibPerSlot) MiB (\(totalPages) pages): 1/3 zero, 1/3 from 1024 distinct pages, 1/3 unique; \(options.passes) passes")
let expected = expectedCounts()
print("Expected at convergence: pages_shared \(expected.shared), pages_sharing \(expected.sharing), zero pages \(expected.zero)")

let engine = try runEngine()
var kernel: (passes: [PassResult], trackingBytes: Int)?
if options.kernel { kernel = runKernel() }

print("")
print("| scanner | pass 1 pages/s per core | pass 2 (merging) | steady passes | tracking bytes per resident page | full scans to converge | shared / sharing / zero |")
print("|---|---|---|---|---|---|---|")
report("Samepage engine", engine.passes, trackingBytes: engine.trackingBytes)
if let kernel { report("kernel ksmd", kernel.passes, trackingBytes: kernel.trackingBytes) }
print("")
print(String(format: "Samepage tracking: %d bytes held by the engine (%.2f B/page); RssAnon grew by %d bytes (%.2f B/page)",
             engine.trackingBytes, Double(engine.trackingBytes) / Double(totalPages),
             engine.anonBytes, Double(engine.anonBytes) / Double(totalPages)))
for (i, p) in engine.passes.enumerated() {
    print(String(format: "  engine pass %d: %d pages, %.3f s CPU, %.3f s wall, shared %d sharing %d zero %d", i + 1, p.pages, p.cpu, p.wall, p.counters.shared, p.counters.sharing, p.counters.zero))
}
for (i, p) in (kernel?.passes ?? []).enumerated() {
    print(String(format: "  ksmd pass %d: %d pages, %.3f s CPU, %.3f s wall, shared %d sharing %d zero %d", i + 1, p.pages, p.cpu, p.wall, p.counters.shared, p.counters.sharing, p.counters.zero))
}
let final = engine.passes.last!.counters
if final != expected {
    print("MISMATCH: engine converged to \(final), expected \(expected)")
    exit(1)
}

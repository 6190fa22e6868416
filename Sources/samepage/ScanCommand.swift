import ArgumentParser
import Foundation
import GuestMemory
import SamepageCore
import SamepageModel

/// `samepage scan FILE...`: runs the merging engine over memory image files, one slot per
/// file, and reports what KSM would share.
struct ScanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scan",
        abstract: "Scan memory image files for mergeable pages and print KSM's counters.",
        discussion: """
            Each file is one slot; all files are in one trust group, so pages are compared \
            across files. Only allocated ranges are read (pread); holes in sparse files are \
            never read and never allocated. Static content converges in two passes: the first \
            records checksums, the second merges.
            """
    )

    @Option(help: "Full scans over all files.")
    var passes: Int = 2

    @Option(help: "Pages per batch (pages_to_scan).")
    var pagesToScan: Int = 4096

    @Option(help: "Cap on stable nodes, i.e. merged contents tracked (0 = unlimited).")
    var maxKernelPages: Int = 0

    @Option(help: "Cap on pages sharing one stable node (0 = unlimited, else at least 2).")
    var maxPageSharing: Int = 256

    @Flag(help: "Skip pages that keep failing to merge (kernel smart_scan).")
    var smartScan = false

    @Flag(help: "Print JSON computed here, no daemon: the global counters under the kernel's names, and files, one object per file.")
    var json = false

    @Argument(help: "Memory image files; each size must be a multiple of 4096 bytes.")
    var files: [String]

    func validate() throws {
        guard passes >= 1 else { throw ValidationError("--passes must be at least 1") }
        guard !files.isEmpty else { throw ValidationError("no files to scan") }
        do {
            try tunables.validate()
        } catch {
            throw ValidationError(error.description)
        }
    }

    var tunables: Tunables {
        Tunables(
            pagesToScan: pagesToScan, sleepMillisecs: 0, maxKernelPages: maxKernelPages,
            maxPageSharing: maxPageSharing, smartScan: smartScan)
    }

    func run() throws {
        var images: [ImageFile] = []
        for path in files {
            do {
                images.append(try ImageFile(path: path))
            } catch {
                throw Failure(error.description)
            }
        }
        let engine = try Engine(tunables: tunables)
        let group = engine.trustGroup(named: "scan")
        let ids = images.map { engine.addSlot($0, options: SlotOptions(name: $0.path, trustGroup: group))! }
        while engine.counters.fullScans < passes {
            let report = engine.scanBatch(endingFullScans: true)
            if let failure = report.failures.first {
                throw Failure("scan failed: \(failure)")
            }
        }
        let perFile = zip(images, ids).map { (image, id) in (image, engine.counters(for: id)!) }
        if json {
            print(try ScanReport(global: engine.counters, files: perFile).json())
        } else {
            printTable(global: engine.counters, files: perFile)
        }
    }

    private func printTable(global: Counters, files: [(ImageFile, Counters)]) {
        // Files are not reclaimed: what sharing would save and the zero pages, as a share of them.
        func savings(_ counters: Counters, pages: Int) -> String {
            let bytes = pages * pageSize
            let sharing = counters.pagesSharing * pageSize
            let share = bytes > 0 ? String(format: " (%.1f%%)", Double(sharing) * 100 / Double(bytes)) : ""
            return "sharing would save \(Savings.format(bytes: sharing)) of \(Savings.format(bytes: bytes))\(share), "
                + "zero pages \(Savings.format(bytes: counters.zeroPages * pageSize))"
        }
        print("saves            \(savings(global, pages: files.reduce(0) { $0 + $1.0.pageCount }))")
        for (name, value) in global.named {
            print("\(name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(value)")
        }
        for (image, counters) in files {
            print("\n\(image.path) (\(image.pageCount) pages)")
            print("  saves            \(savings(counters, pages: image.pageCount))")
            for (name, value) in counters.named {
                print("  \(name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(value)")
            }
        }
    }
}

/// What `samepage scan --json` prints: the global counters at top level, then per file.
struct ScanReport: Encodable {
    struct File: Encodable {
        var path: String
        var pages: Int
        var counters: Counters
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: DynamicKey.self)
            try c.encode(path, forKey: DynamicKey("path"))
            try c.encode(pages, forKey: DynamicKey("pages"))
            try counters.encode(to: encoder)
        }
    }
    var global: Counters
    var files: [File]

    init(global: Counters, files: [(ImageFile, Counters)]) {
        self.global = global
        self.files = files.map { File(path: $0.0.path, pages: $0.0.pageCount, counters: $0.1) }
    }

    func encode(to encoder: any Encoder) throws {
        try global.encode(to: encoder)
        var c = encoder.container(keyedBy: DynamicKey.self)
        try c.encode(files, forKey: DynamicKey("files"))
    }

    func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}

struct DynamicKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

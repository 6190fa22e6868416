import Foundation
import Glibc
@testable import GuestMemory
import SamepageCore
import Testing

/// Word `i` of a page holding content `id`: the pattern samepage-private-guest writes. Id 0
/// is the zero page.
func privatePattern(_ id: UInt64, word i: Int) -> UInt64 {
    id == 0 ? 0 : (id &* 0x9E37_79B9_7F4A_7C15) ^ UInt64(i)
}

/// Writes content `id` all over the page at `page`, as the stand-in guest does.
func writePrivatePattern(_ id: UInt64, at page: UnsafeMutableRawPointer) {
    let words = page.assumingMemoryBound(to: UInt64.self)
    for i in 0..<(pageSize / 8) { words[i] = privatePattern(id, word: i) }
}

/// Whether the page at `page` holds content `id`.
func holdsPrivatePattern(_ id: UInt64, at page: UnsafeRawPointer) -> Bool {
    (0..<(pageSize / 8)).allSatisfy { page.load(fromByteOffset: $0 * 8, as: UInt64.self) == privatePattern(id, word: $0) }
}

/// A running samepage-private-guest (Tests/PrivateGuest): a child process whose private
/// memory holds known pages. It runs until its stdin closes (when this value goes) or
/// ``kill()``.
final class PrivateGuestProcess {
    static var path: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("samepage-private-guest").path
    }

    let pid: pid_t
    let pages: Int
    /// Page → content id, for the pages it wrote.
    let written: [Int: UInt64]
    let address: UInt64
    let file: String?
    private var input: Int32
    private var reaped = false

    /// Starts a guest of `pages` pages holding `written`, anonymous or, with `file`, a
    /// private mapping of that file (created, and removed when this value goes).
    init(pages: Int, written: [Int: UInt64], file: String? = nil) throws {
        self.pages = pages
        self.written = written
        self.file = file
        var toChild: [Int32] = [0, 0], fromChild: [Int32] = [0, 0]
        guard pipe(&toChild) == 0, pipe(&fromChild) == 0 else { throw SystemError("pipe") }
        for fd in toChild + fromChild { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        let spec = written.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        let arguments = [Self.path, "\(pages)", spec] + (file.map { [$0] } ?? [])
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { for arg in argv { free(arg) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, Self.path, &actions, nil, argv, environ)
        close(toChild[0])
        close(fromChild[1])
        input = toChild[1]
        defer { close(fromChild[0]) }
        guard spawned == 0 else { throw SystemError(errno: Errno(rawValue: spawned), operation: "spawn \(Self.path)") }
        self.pid = pid

        var line: [UInt8] = []
        var entry = pollfd(fd: fromChild[0], events: Int16(POLLIN), revents: 0)
        while !line.contains(UInt8(ascii: "\n")) {
            guard poll(&entry, 1, 10_000) == 1 else { throw SystemError(errno: .timedOut, operation: "private guest never got ready") }
            var chunk = [UInt8](repeating: 0, count: 256)
            let count = read(fromChild[0], &chunk, chunk.count)
            guard count > 0 else { throw SystemError(errno: .ioError, operation: "private guest exited before READY") }
            line += chunk[..<count]
        }
        let fields = String(decoding: line, as: UTF8.self).split(whereSeparator: \.isWhitespace)
        guard fields.count == 3, fields[0] == "READY", let address = UInt64(fields[1], radix: 16) else {
            throw SystemError(errno: .ioError, operation: "private guest said \(fields)")
        }
        self.address = address
    }

    deinit {
        close(input)
        if !reaped { waitpid(pid, nil, 0) }
        if let file { unlink(file) }
    }

    /// SIGKILL, then reaps it: its pid may be reused from here on.
    func kill() {
        Glibc.kill(pid, SIGKILL)
        waitpid(pid, nil, 0)
        reaped = true
    }

    var addresses: Range<UInt64> { address..<(address + UInt64(pages * pageSize)) }

    /// Its maps line for the memory, cut to exactly the memory's addresses.
    func mapping() throws -> MemoryMapping {
        var mapping = try #require(try MemoryMapping.read(pid: pid).first { $0.addresses.contains(address) })
        mapping.addresses = addresses
        return mapping
    }

    /// A region over the memory, copying with `copyMethod`.
    func region(_ copyMethod: PrivateCopyMethod = .processVMReadv) throws -> PrivateGuestRegion {
        try PrivateGuestRegion(mapping: mapping(), of: pid, backendID: "pc.ram",
                               processDescriptor: LinuxCalls.pidfdOpen(pid), copyMethod: copyMethod)
    }

    /// `VmRSS` of /proc/PID/status, in KiB.
    func residentKiB() throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
        return try #require(Int(line.split(whereSeparator: \.isWhitespace)[1]))
    }

    /// How many pages of the memory have bit 63 (present) set in its pagemap, read with one
    /// plain pread: a witness independent of ProcessPageMap.
    func presentPages() throws -> Int {
        let fd = open("/proc/\(pid)/pagemap", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("open pagemap") }
        defer { close(fd) }
        var entries = [UInt64](repeating: 0, count: pages)
        let count = entries.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(address / 4096 * 8)) }
        guard count == pages * 8 else { throw SystemError("pread pagemap") }
        return entries.filter { $0 >> 63 == 1 }.count
    }
}

/// What the engine does to a region: residency in 2 MiB windows, then one read per run of
/// resident pages. Returns the resident pages and those whose content was not `written`'s.
func scanLikeTheEngine(_ region: PrivateGuestRegion, written: [Int: UInt64]) throws -> (resident: [Int], wrong: [Int]) {
    let window = 512
    var vector = [UInt8](repeating: 0xfe, count: window)
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 32 * pageSize, alignment: pageSize)
    defer { buffer.deallocate() }
    var resident: [Int] = [], wrong: [Int] = []
    for start in stride(from: 0, to: region.pageCount, by: window) {
        let pages = start..<min(region.pageCount, start + window)
        try vector.withUnsafeMutableBufferPointer { try region.residency(of: pages, into: $0) }
        let here = pages.filter { vector[$0 - start] & 1 != 0 }
        resident += here
        var k = 0
        while k < here.count {
            var end = k + 1
            while end < here.count && here[end] == here[end - 1] + 1 && end - k < 32 { end += 1 }
            let run = here[k]..<(here[end - 1] + 1)
            try region.read(run, into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<(run.count * pageSize)]))
            for page in run where !holdsPrivatePattern(written[page] ?? .max, at: buffer.baseAddress! + (page - run.lowerBound) * pageSize) {
                wrong.append(page)
            }
            k = end
        }
    }
    return (resident, wrong)
}

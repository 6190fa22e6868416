import Foundation
import Glibc
import LinuxSystem

/// One line of `/proc/PID/maps`: a virtual memory area of a process.
public struct MemoryMapping: Sendable, Hashable {
    /// The virtual addresses, `start..<end`.
    public var addresses: Range<UInt64>
    public var readable: Bool
    public var writable: Bool
    public var executable: Bool
    /// `s` (MAP_SHARED) rather than `p` (private, copy-on-write).
    public var shared: Bool
    /// The offset into the file of `addresses.lowerBound`.
    public var fileOffset: UInt64
    public var file: FileIdentity
    /// The path column: a file path, `/memfd:NAME`, `[heap]`, `anon_inode:…`, or nil for
    /// anonymous memory. A trailing ` (deleted)` is removed and reported in `deleted`.
    public var path: String?
    /// The file was unlinked (always so for a memfd).
    public var deleted: Bool

    public var length: UInt64 { addresses.upperBound - addresses.lowerBound }

    /// Backed by a file that could be guest RAM: shared, with an inode, not a kernel-internal
    /// anonymous inode (`anon_inode:kvm-vcpu`, …).
    public var isSharedFileMapping: Bool {
        shared && file.inode != 0 && !(path?.hasPrefix("anon_inode:") ?? true)
    }

    /// Private anonymous memory (`MAP_PRIVATE | MAP_ANONYMOUS`): no file, no name (not
    /// `[heap]` or `[stack]`).
    public var isPrivateAnonymous: Bool { !shared && file.inode == 0 && path == nil }

    /// A file mapped private (`MAP_PRIVATE`): copy-on-write, its written pages anonymous.
    public var isPrivateFileMapping: Bool {
        !shared && file.inode != 0 && !(path?.hasPrefix("anon_inode:") ?? true)
    }

    /// A memfd (`/memfd:NAME`).
    public var isMemfd: Bool { path?.hasPrefix("/memfd:") ?? false }

    /// The `/proc/PID/map_files` name of this area.
    public var mapFilesName: String {
        String(addresses.lowerBound, radix: 16) + "-" + String(addresses.upperBound, radix: 16)
    }

    /// Parses one line; nil if it is not a maps line.
    public init?(mapsLine line: Substring) {
        var fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)[...]
        guard fields.count >= 5 else { return nil }
        let range = fields.removeFirst().split(separator: "-")
        let permissions = Array(fields.removeFirst().utf8)
        guard range.count == 2, let start = UInt64(range[0], radix: 16), let end = UInt64(range[1], radix: 16),
              start <= end, permissions.count == 4,
              let offset = UInt64(fields.removeFirst(), radix: 16)
        else { return nil }
        let device = fields.removeFirst().split(separator: ":")
        guard device.count == 2, let major = UInt32(device[0], radix: 16), let minor = UInt32(device[1], radix: 16),
              let inode = UInt64(fields.removeFirst())
        else { return nil }
        addresses = start..<end
        readable = permissions[0] == UInt8(ascii: "r")
        writable = permissions[1] == UInt8(ascii: "w")
        executable = permissions[2] == UInt8(ascii: "x")
        shared = permissions[3] == UInt8(ascii: "s")
        fileOffset = offset
        file = FileIdentity(deviceMajor: major, deviceMinor: minor, inode: inode)
        var name = fields.first.map { String($0.drop { $0 == " " }) } ?? ""
        deleted = name.hasSuffix(" (deleted)")
        if deleted { name.removeLast(" (deleted)".count) }
        path = name.isEmpty ? nil : name
    }

    /// Parses the text of a `/proc/PID/maps` file, skipping lines it does not understand.
    public static func parse(maps text: String) -> [MemoryMapping] {
        text.split(separator: "\n").compactMap { MemoryMapping(mapsLine: $0) }
    }

    /// Reads and parses `/proc/PID/maps`.
    public static func read(pid: pid_t) throws(SystemError) -> [MemoryMapping] {
        parse(maps: String(decoding: try readWholeFile("/proc/\(pid)/maps"), as: UTF8.self))
    }

    /// Joins areas that are one mapping of one file split by the kernel (an `madvise` or
    /// `mprotect` on part of it): adjacent addresses, the same file and flags, contiguous
    /// file offsets.
    public static func coalesced(_ mappings: [MemoryMapping]) -> [MemoryMapping] {
        var result: [MemoryMapping] = []
        for mapping in mappings {
            if var last = result.last, last.file == mapping.file, last.file.inode != 0,
               last.addresses.upperBound == mapping.addresses.lowerBound, last.shared == mapping.shared,
               last.fileOffset + last.length == mapping.fileOffset, last.path == mapping.path {
                last.addresses = last.addresses.lowerBound..<mapping.addresses.upperBound
                last.readable = last.readable && mapping.readable
                last.writable = last.writable && mapping.writable
                result[result.count - 1] = last
            } else {
                result.append(mapping)
            }
        }
        return result
    }

    /// The processes that map `file`, scanning every `/proc/PID/maps` (processes that cannot
    /// be read are skipped). For finding writers of a guest backend other than its QEMU.
    public static func processes(mapping file: FileIdentity) -> [pid_t] {
        processes(mappingAny: [file])[file] ?? []
    }

    /// For each file, the processes that map it, in one pass over `/proc`.
    public static func processes(mappingAny files: Set<FileIdentity>) -> [FileIdentity: [pid_t]] {
        guard !files.isEmpty else { return [:] }
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        var result: [FileIdentity: [pid_t]] = [:]
        for pid in entries.compactMap({ pid_t($0) }).sorted() {
            guard let maps = try? read(pid: pid) else { continue }
            for file in Set(maps.map(\.file)).intersection(files) { result[file, default: []].append(pid) }
        }
        return result
    }
}

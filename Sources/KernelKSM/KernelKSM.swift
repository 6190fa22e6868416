import Glibc
import LinuxSystem

// # Governing the kernel's KSM
//
// A guest whose RAM is private (anonymous memory, as QEMU allocates it without a shared
// backend) can be merged for real by the kernel's own KSM: QEMU marks it MADV_MERGEABLE
// (its `mem-merge` machine property, on by default, or a memory backend's `merge`), and
// ksmd, the kernel's scanner, merges what it finds. ksmd is one host-wide thread steered by
// the files of /sys/kernel/mm/ksm: `run` starts and stops it, `pages_to_scan` and
// `sleep_millisecs` set its rate (or the advisor does, from a target full-scan time),
// `max_page_sharing`, `use_zero_pages` and `smart_scan` shape what it merges, and its
// counters (`pages_sharing`, `general_profit`, …) say what it saved.
//
// Samepage governs ksmd the way ksmtuned and oVirt's MoM did: it runs it while memory is
// short (``KernelKSMRunPolicy``), with knobs from its configuration, and gives the host
// back its own settings when it stops (``KernelKSMSettings``). This file is the edge that
// reads and writes those files, typed. What it must respect is the kernel's:
//
// - A knob may be missing: `smart_scan` came in 6.7, the advisor in 6.8,
//   `merge_across_nodes` exists only on NUMA kernels, and the whole directory only with
//   CONFIG_KSM. A missing file reads as nil, never as an error.
// - A write may be refused, and the refusal is the kernel's answer, not an I/O problem:
//   `EBUSY` for `max_page_sharing` or `merge_across_nodes` while pages are shared, `EINVAL`
//   for a value out of range or for `pages_to_scan` while an advisor is selected. It is
//   thrown as a ``SystemError`` naming the value and the file.
// - A value is written in one write(2), as sysfs requires, with the newline `echo` adds.
// - Writing `run` = 2 unmerges every page before the write returns: it can take seconds and
//   may need as much memory as merging saved. Writes are therefore `noasync`.
//
// The directory is a parameter, so that the tests work on a fake one with the real files'
// formats and never touch the host's ksmd.

/// The kernel's KSM, through the files of its sysfs directory (`/sys/kernel/mm/ksm`, or a
/// directory of the same shape): typed reads and writes of ksmd's knobs (``KernelKSMKnob``)
/// and counters (``KernelKSMCounters``).
///
/// A value is only a path: it opens a file for each read or write and keeps nothing open.
public struct KernelKSM: Sendable, Equatable {
    /// Where the kernel puts KSM's files.
    public static let defaultRoot = "/sys/kernel/mm/ksm"

    /// The directory read and written.
    public let root: String

    /// The KSM directory at `root` (the kernel's unless told otherwise).
    public init(root: String = defaultRoot) {
        self.root = root
    }

    /// The path of the file `name` in the directory.
    public func path(_ name: String) -> String {
        root.hasSuffix("/") ? root + name : root + "/" + name
    }

    /// Whether the directory exists: false on a kernel built without CONFIG_KSM.
    ///
    /// The corresponding C function is `stat`.
    public var isPresent: Bool {
        var status = stat()
        return stat(root, &status) == 0 && (status.st_mode & S_IFMT) == S_IFDIR
    }

    // MARK: Knobs

    /// The knob's value, or nil when the kernel has no such file (an older kernel, or no NUMA).
    ///
    /// - Throws: ``SystemError`` when the file exists but cannot be read, or `EINVAL` as
    ///   `parse PATH` when its text is not a value of the knob's type.
    public func read<Value>(_ knob: KernelKSMKnob<Value>) throws(SystemError) -> Value? {
        try read(knob.name, as: Value.self)
    }

    /// Writes `value` to the knob's file, in one write(2).
    ///
    /// - Throws: ``SystemError`` as `write VALUE to PATH`, with the kernel's errno: `ENOENT`
    ///   when the kernel has no such knob, `EBUSY` or `EINVAL` when it refuses the value.
    @available(*, noasync, message: "writing run = 2 unmerges every page before it returns; call it from a thread of your own")
    public func write<Value>(_ knob: KernelKSMKnob<Value>, _ value: Value) throws(SystemError) {
        try write(name: knob.name, text: value.sysfsText)
    }

    // MARK: Counters

    /// Every counter the directory has; each one the kernel lacks is nil.
    ///
    /// The files are read one after the other while ksmd runs, so the counters are not one
    /// instant's: `pages_sharing` may be a batch ahead of `pages_shared`.
    ///
    /// - Throws: ``SystemError`` when a counter's file exists but cannot be read or parsed.
    public func counters() throws(SystemError) -> KernelKSMCounters {
        var counters = KernelKSMCounters()
        for (name, keyPath) in KernelKSMCounters.files {
            counters[keyPath: keyPath] = try read(name, as: Int.self)
        }
        return counters
    }

    // MARK: Files

    /// The value in the file `name`, or nil when there is no such file.
    func read<Value: KernelKSMValue>(_ name: String, as type: Value.Type) throws(SystemError) -> Value? {
        let path = path(name)
        let bytes: [UInt8]
        do {
            bytes = try readWholeFile(path, limit: 4096)
        } catch where error.errno == .noSuchFileOrDirectory {
            return nil
        }
        var text = Substring(String(decoding: bytes, as: UTF8.self))
        while let last = text.last, last == "\n" || last == " " {
            text.removeLast()
        }
        guard let value = Value(sysfsText: text) else {
            throw SystemError(errno: .invalidArgument, operation: "parse \(path): \(String(reflecting: String(text)))")
        }
        return value
    }

    /// Writes `text` and a newline to the file `name` in one write(2). The file is opened
    /// without `O_CREAT` (a knob the kernel lacks is `ENOENT`, never a new file) and with
    /// `O_TRUNC`, which sysfs ignores and which keeps a fake directory's files whole.
    @available(*, noasync, message: "writing run = 2 unmerges every page before it returns; call it from a thread of your own")
    func write(name: String, text: String) throws(SystemError) {
        let path = path(name)
        let operation = "write \(text) to \(path)"
        let file = try OwnedDescriptor.open(path, .writeOnly, options: .truncate, operation: operation)
        let bytes = Array((text + "\n").utf8)
        let written = try retryingInterrupts(operation) {
            bytes.withUnsafeBytes { Glibc.write(file.descriptor.rawValue, $0.baseAddress, $0.count) }
        }
        // sysfs takes a value in one write and answers for all of it; less is not a value.
        guard written == bytes.count else {
            throw SystemError(errno: .ioError, operation: "\(operation) (\(written) of \(bytes.count) bytes written)")
        }
    }
}

/// The host's memory as `/proc/meminfo` gives it: what there is and what is available
/// without swapping.
///
/// ```text
/// MemTotal:       24684084 kB
/// MemFree:        18914540 kB
/// MemAvailable:   23463316 kB
/// ```
///
/// `MemAvailable` is the kernel's estimate of what could be allocated without swapping (free
/// memory plus what reclaim would give back from the page cache and slabs); it is the measure
/// of memory being short, where `MemFree` is not (a busy host's page cache keeps it low).
public struct MemoryInfo: Sendable, Equatable {
    /// `MemTotal`, in bytes.
    public var totalBytes: UInt64
    /// `MemAvailable`, in bytes.
    public var availableBytes: UInt64

    public init(totalBytes: UInt64, availableBytes: UInt64) {
        self.totalBytes = totalBytes
        self.availableBytes = availableBytes
    }

    /// Parses the file's text; nil when `MemTotal` or `MemAvailable` is missing or malformed
    /// (every kernel since 3.14 writes both, in kB).
    public init?(parsing text: String) {
        var total: UInt64?
        var available: UInt64?
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let name = fields.first, name == "MemTotal:" || name == "MemAvailable:" else { continue }
            guard fields.count == 3, fields[2] == "kB", let kibibytes = UInt64(fields[1]),
                kibibytes <= UInt64.max / 1024
            else { return nil }
            if name == "MemTotal:" {
                total = kibibytes * 1024
            } else {
                available = kibibytes * 1024
            }
        }
        guard let total, let available else { return nil }
        self.init(totalBytes: total, availableBytes: available)
    }

    /// Reads `/proc/meminfo`, or the file at `path`.
    ///
    /// - Throws: ``SystemError`` when the file cannot be read, or `EINVAL` as `parse PATH`
    ///   when its text is not understood.
    public static func read(path: String = "/proc/meminfo") throws(SystemError) -> MemoryInfo {
        try readParsedFile(path, limit: 1 << 16, MemoryInfo.init(parsing:))
    }
}

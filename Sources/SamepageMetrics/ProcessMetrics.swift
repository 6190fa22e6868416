import Foundation
import Glibc

/// The standard `process_*` metrics of a Prometheus client library (the Go and Python
/// clients' names and meanings), so that generic dashboards and alerts find samepaged's cost
/// where they look for any exporter's. Each figure is nil when it could not be read, and its
/// series is left out then.
public struct ProcessMetrics: Sendable, Equatable {
    /// User and system CPU time, all threads (`process_cpu_seconds_total`).
    public var cpuSeconds: Double?
    /// Resident memory (`process_resident_memory_bytes`).
    public var residentBytes: Int?
    /// Virtual memory (`process_virtual_memory_bytes`).
    public var virtualBytes: Int?
    /// Open file descriptors (`process_open_fds`).
    public var openFDs: Int?
    /// The soft limit on file descriptors (`process_max_fds`).
    public var maxFDs: Int?
    /// When the process started, in seconds since the Unix epoch (`process_start_time_seconds`).
    public var startTimeSeconds: Double?

    /// The figures given; all nil by default.
    public init(
        cpuSeconds: Double? = nil, residentBytes: Int? = nil, virtualBytes: Int? = nil, openFDs: Int? = nil,
        maxFDs: Int? = nil, startTimeSeconds: Double? = nil
    ) {
        self.cpuSeconds = cpuSeconds
        self.residentBytes = residentBytes
        self.virtualBytes = virtualBytes
        self.openFDs = openFDs
        self.maxFDs = maxFDs
        self.startTimeSeconds = startTimeSeconds
    }

    /// The calling process's figures now, from `getrusage`, `/proc/self/statm`,
    /// `/proc/self/fd`, `getrlimit` and `/proc/self/stat` with the boot time in `/proc/stat`.
    public static func current() -> ProcessMetrics {
        var metrics = ProcessMetrics(cpuSeconds: processCPUSeconds(), residentBytes: processResidentBytes())
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
           let pages = statm.split(separator: " ").first.flatMap({ Int($0) }) {
            metrics.virtualBytes = pages * page
        }
        metrics.openFDs = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")).map { $0.count }
        var limit = rlimit()
        if getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 { metrics.maxFDs = Int(clamping: limit.rlim_cur) }
        metrics.startTimeSeconds = startTime()
        return metrics
    }

    /// Field 22 of `/proc/self/stat` (start time in clock ticks after boot) plus `btime`.
    private static func startTime() -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")"),
              let proc = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let bootLine = proc.split(separator: "\n").first(where: { $0.hasPrefix("btime ") }),
              let boot = Double(bootLine.dropFirst(6).trimmingCharacters(in: .whitespaces))
        else { return nil }
        // After the command's closing parenthesis: field 3 (state) is the first.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let ticks = Double(fields[19]) else { return nil }
        return boot + ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// The calling process's resident memory, from `/proc/self/statm`; nil if unreadable.
public func processResidentBytes() -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// The calling process's user and system CPU time in seconds, all its threads together.
///
/// The corresponding C function is `getrusage` (`RUSAGE_SELF`), whose microseconds are finer
/// than `/proc/self/stat`'s clock ticks; nil if it fails.
public func processCPUSeconds() -> Double? {
    var usage = rusage()
    guard getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage) == 0 else { return nil }
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
        + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

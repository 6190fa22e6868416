import LinuxSystem

/// What the kernel's KSM did for one process, from `/proc/PID/ksm_stat`: the measure of what
/// ksmd merged of a guest whose RAM is private.
///
/// ```text
/// ksm_rmap_items 0
/// ksm_zero_pages 0
/// ksm_merging_pages 0
/// ksm_process_profit 0
/// ksm_merge_any: no
/// ksm_mergeable: no
/// ```
///
/// The file grew over the kernel's versions (`ksm_rmap_items` in 6.1, the merging pages and
/// profit in 6.4, `ksm_merge_any` and `ksm_mergeable` in 6.14): each field a kernel does not
/// write is nil, and a process without memory (a kernel thread) has an empty file, all nil.
/// Lines this parser does not know are skipped, for kernels yet to come.
public struct ProcessKSMStat: Sendable, Equatable {
    /// `ksm_rmap_items`: the process's pages KSM tracks (each costs an rmap item, 64 bytes).
    public var rmapItems: Int?
    /// `ksm_zero_pages`: its pages merged with the kernel's zero page (`use_zero_pages`).
    public var zeroPages: Int?
    /// `ksm_merging_pages`: its pages mapped to a KSM page: pages it shares.
    public var mergingPages: Int?
    /// `ksm_process_profit`: bytes its merging saved, less its rmap items; may be negative.
    public var processProfit: Int?
    /// `ksm_merge_any`: whether the whole process is mergeable (`prctl(PR_SET_MEMORY_MERGE)`).
    public var mergeAny: Bool?
    /// `ksm_mergeable`: whether any of its areas is one KSM may merge.
    public var mergeable: Bool?

    /// A statistic; each field not given is nil.
    public init(
        rmapItems: Int? = nil, zeroPages: Int? = nil, mergingPages: Int? = nil, processProfit: Int? = nil,
        mergeAny: Bool? = nil, mergeable: Bool? = nil
    ) {
        self.rmapItems = rmapItems
        self.zeroPages = zeroPages
        self.mergingPages = mergingPages
        self.processProfit = processProfit
        self.mergeAny = mergeAny
        self.mergeable = mergeable
    }

    /// Parses the file's text: lines of `name value` (the counts) or `name: yes|no` (the
    /// switches). Nil when a field it knows has a value it cannot read.
    public init?(parsing text: String) {
        self.init()
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count == 2 else { continue }
            var name = fields[0]
            if name.hasSuffix(":") {
                name.removeLast()
            }
            let value = fields[1]
            switch name {
            case "ksm_rmap_items": guard let number = Int(value) else { return nil }; rmapItems = number
            case "ksm_zero_pages": guard let number = Int(value) else { return nil }; zeroPages = number
            case "ksm_merging_pages": guard let number = Int(value) else { return nil }; mergingPages = number
            case "ksm_process_profit": guard let number = Int(value) else { return nil }; processProfit = number
            case "ksm_merge_any": guard let answer = Self.yesOrNo(value) else { return nil }; mergeAny = answer
            case "ksm_mergeable": guard let answer = Self.yesOrNo(value) else { return nil }; mergeable = answer
            default: continue
            }
        }
    }

    private static func yesOrNo(_ text: Substring) -> Bool? {
        switch text {
        case "yes": true
        case "no": false
        default: nil
        }
    }

    /// Reads `/proc/PID/ksm_stat` (under `procRoot`).
    ///
    /// - Throws: ``SystemError``: `ENOENT` when the process is gone or the kernel has no such
    ///   file (before 6.1, or without CONFIG_KSM), `EINVAL` as `parse PATH` when its text is
    ///   not understood.
    public static func read(pid: Int32, procRoot: String = "/proc") throws(SystemError) -> ProcessKSMStat {
        try readParsedFile("\(procRoot)/\(pid)/ksm_stat", limit: 4096, ProcessKSMStat.init(parsing:))
    }

    /// Parses `/proc/PID/ksm_merging_pages`: one number. Nil for anything else, including the
    /// empty file of a process without memory.
    public static func mergingPages(parsing text: String) -> Int? {
        var text = Substring(text)
        while text.last == "\n" {
            text.removeLast()
        }
        return Int(text, radix: 10)
    }

    /// Reads `/proc/PID/ksm_merging_pages` (under `procRoot`, since 5.19): the process's pages
    /// mapped to a KSM page. Nil when the process has no memory (the file is empty).
    ///
    /// - Throws: ``SystemError``: `ENOENT` when the process is gone or the kernel has no such
    ///   file, `EINVAL` as `parse PATH` when it holds something other than a number.
    public static func readMergingPages(pid: Int32, procRoot: String = "/proc") throws(SystemError) -> Int? {
        // The parse's value is itself optional: nil (no memory) for the empty file.
        try readParsedFile("\(procRoot)/\(pid)/ksm_merging_pages", limit: 4096) { text -> Int?? in
            text.isEmpty ? .some(nil) : mergingPages(parsing: text).map { .some($0) }
        }
    }
}

import SamepageCore

/// The settings' file form, kept while samepaged governs ksmd (`HostDefaults.kernelKSMSaved`)
/// so that the host's own settings survive a crash of samepaged: one key per knob, the
/// kernel's file name, absent for a knob the kernel did not have; `run` as its number.
extension KernelKSMSettings: Codable {
    enum CodingKeys: String, CodingKey {
        case run
        case pagesToScan = "pages_to_scan"
        case sleepMillisecs = "sleep_millisecs"
        case maxPageSharing = "max_page_sharing"
        case mergeAcrossNodes = "merge_across_nodes"
        case useZeroPages = "use_zero_pages"
        case smartScan = "smart_scan"
        case advisorMode = "advisor_mode"
        case advisorTargetScanTime = "advisor_target_scan_time"
        case advisorMaxCPU = "advisor_max_cpu"
        case advisorMinPagesToScan = "advisor_min_pages_to_scan"
        case advisorMaxPagesToScan = "advisor_max_pages_to_scan"
        case stableNodeChainsPruneMillisecs = "stable_node_chains_prune_millisecs"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        if let run = try c.decodeIfPresent(Int.self, forKey: .run) {
            guard let mode = RunMode(rawValue: run) else {
                throw DecodingError.dataCorruptedError(forKey: .run, in: c, debugDescription: "run must be 0, 1 or 2, not \(run)")
            }
            self.run = mode
        }
        pagesToScan = try c.decodeIfPresent(Int.self, forKey: .pagesToScan)
        sleepMillisecs = try c.decodeIfPresent(Int.self, forKey: .sleepMillisecs)
        maxPageSharing = try c.decodeIfPresent(Int.self, forKey: .maxPageSharing)
        mergeAcrossNodes = try c.decodeIfPresent(Bool.self, forKey: .mergeAcrossNodes)
        useZeroPages = try c.decodeIfPresent(Bool.self, forKey: .useZeroPages)
        smartScan = try c.decodeIfPresent(Bool.self, forKey: .smartScan)
        advisorMode = try c.decodeIfPresent(AdvisorMode.self, forKey: .advisorMode)
        advisorTargetScanTime = try c.decodeIfPresent(Int.self, forKey: .advisorTargetScanTime)
        advisorMaxCPU = try c.decodeIfPresent(Int.self, forKey: .advisorMaxCPU)
        advisorMinPagesToScan = try c.decodeIfPresent(Int.self, forKey: .advisorMinPagesToScan)
        advisorMaxPagesToScan = try c.decodeIfPresent(Int.self, forKey: .advisorMaxPagesToScan)
        stableNodeChainsPruneMillisecs = try c.decodeIfPresent(Int.self, forKey: .stableNodeChainsPruneMillisecs)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(run?.rawValue, forKey: .run)
        try c.encodeIfPresent(pagesToScan, forKey: .pagesToScan)
        try c.encodeIfPresent(sleepMillisecs, forKey: .sleepMillisecs)
        try c.encodeIfPresent(maxPageSharing, forKey: .maxPageSharing)
        try c.encodeIfPresent(mergeAcrossNodes, forKey: .mergeAcrossNodes)
        try c.encodeIfPresent(useZeroPages, forKey: .useZeroPages)
        try c.encodeIfPresent(smartScan, forKey: .smartScan)
        try c.encodeIfPresent(advisorMode, forKey: .advisorMode)
        try c.encodeIfPresent(advisorTargetScanTime, forKey: .advisorTargetScanTime)
        try c.encodeIfPresent(advisorMaxCPU, forKey: .advisorMaxCPU)
        try c.encodeIfPresent(advisorMinPagesToScan, forKey: .advisorMinPagesToScan)
        try c.encodeIfPresent(advisorMaxPagesToScan, forKey: .advisorMaxPagesToScan)
        try c.encodeIfPresent(stableNodeChainsPruneMillisecs, forKey: .stableNodeChainsPruneMillisecs)
    }
}

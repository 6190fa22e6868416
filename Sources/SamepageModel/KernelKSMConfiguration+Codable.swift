import SamepageCore

/// The wire form of `[kernel_ksm]`: the configuration's own keys (``KernelKSMConfiguration/CodingKeys``),
/// `trust_group` null when no group is served. A key left out takes its default, as in the
/// configuration file.
extension KernelKSMConfiguration: Codable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = KernelKSMConfiguration()
        self.init(
            enabled: try c.decode(.enabled, or: d.enabled),
            trustGroup: try c.decodeIfPresent(String.self, forKey: .trustGroup),
            availableThresholdPercent: try c.decode(.availableThresholdPercent, or: d.availableThresholdPercent),
            advisorMode: try c.decode(.advisorMode, or: d.advisorMode),
            advisorTargetScanTime: try c.decode(.advisorTargetScanTime, or: d.advisorTargetScanTime),
            advisorMaxCPU: try c.decode(.advisorMaxCPU, or: d.advisorMaxCPU),
            pagesToScan: try c.decode(.pagesToScan, or: d.pagesToScan),
            sleepMillisecs: try c.decode(.sleepMillisecs, or: d.sleepMillisecs),
            maxPageSharing: try c.decode(.maxPageSharing, or: d.maxPageSharing),
            useZeroPages: try c.decode(.useZeroPages, or: d.useZeroPages),
            smartScan: try c.decode(.smartScan, or: d.smartScan))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(enabled, forKey: .enabled)
        try c.encode(trustGroup, forKey: .trustGroup)
        try c.encode(availableThresholdPercent, forKey: .availableThresholdPercent)
        try c.encode(advisorMode, forKey: .advisorMode)
        try c.encode(advisorTargetScanTime, forKey: .advisorTargetScanTime)
        try c.encode(advisorMaxCPU, forKey: .advisorMaxCPU)
        try c.encode(pagesToScan, forKey: .pagesToScan)
        try c.encode(sleepMillisecs, forKey: .sleepMillisecs)
        try c.encode(maxPageSharing, forKey: .maxPageSharing)
        try c.encode(useZeroPages, forKey: .useZeroPages)
        try c.encode(smartScan, forKey: .smartScan)
    }
}

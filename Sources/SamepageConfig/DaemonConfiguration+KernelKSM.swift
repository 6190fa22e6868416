import SamepageCore
import SamepageModel

extension DaemonConfiguration {
    /// Reads `[kernel_ksm]` over the defaults: each key checked on its own, so that every bad
    /// one is reported at its line.
    mutating func readKernelKSM(_ section: inout TableReader) {
        typealias Key = KernelKSMConfiguration.CodingKeys
        typealias Range = KernelKSMConfiguration.Range
        if let enabled = section.bool(Key.enabled.rawValue) {
            kernelKSM.enabled = enabled
        }
        if let group = section.string(Key.trustGroup.rawValue, checkedBy: GuestPolicy.trustGroupProblem) {
            kernelKSM.trustGroup = group.isEmpty ? nil : group
        }
        if let percent = section.integer(
            Key.availableThresholdPercent.rawValue, in: Range.availableThresholdPercent,
            describedAs: Range.availableThresholdPercentWords)
        {
            kernelKSM.availableThresholdPercent = percent
        }
        if let mode = section.choice(Key.advisorMode.rawValue, named: \AdvisorMode.rawValue) {
            kernelKSM.advisorMode = mode
        }
        if let seconds = section.integer(
            Key.advisorTargetScanTime.rawValue, in: Range.advisorTargetScanTime, describedAs: Range.advisorTargetScanTimeWords)
        {
            kernelKSM.advisorTargetScanTime = seconds
        }
        if let percent = section.integer(Key.advisorMaxCPU.rawValue, in: Range.advisorMaxCPU, describedAs: Range.advisorMaxCPUWords) {
            kernelKSM.advisorMaxCPU = percent
        }
        if let pages = section.integer(Key.pagesToScan.rawValue, in: Range.pagesToScan) {
            kernelKSM.pagesToScan = pages
        }
        if let milliseconds = section.integer(Key.sleepMillisecs.rawValue, in: Range.sleepMillisecs) {
            kernelKSM.sleepMillisecs = milliseconds
        }
        if let sharing = section.integer(
            Key.maxPageSharing.rawValue, in: Range.maxPageSharing, describedAs: Range.maxPageSharingWords)
        {
            kernelKSM.maxPageSharing = sharing
        }
        if let zero = section.bool(Key.useZeroPages.rawValue) {
            kernelKSM.useZeroPages = zero
        }
        if let smart = section.bool(Key.smartScan.rawValue) {
            kernelKSM.smartScan = smart
        }
    }
}

import SamepageCore
import SamepageModel

extension DaemonConfiguration {
    /// Reads `[kernel_ksm]` over the defaults: each key checked on its own, so that every bad
    /// one is reported at its line.
    mutating func readKernelKSM(_ section: inout TableReader) {
        typealias Key = KernelKSMConfiguration.CodingKeys
        if let enabled = section.bool(Key.enabled.rawValue) {
            kernelKSM.enabled = enabled
        }
        if let group = section.string(Key.trustGroup.rawValue, checkedBy: GuestPolicy.trustGroupProblem) {
            kernelKSM.trustGroup = group.isEmpty ? nil : group
        }
        for knob in KernelKSMConfiguration.integerKnobs {
            let key = knob.key.rawValue
            guard let value = section.integer(key) else { continue }
            if let expected = knob.problem(with: value) {
                section.error(at: key, "\(section.name(key)) = \(value) is out of range: expected \(expected)")
            } else {
                kernelKSM[keyPath: knob.keyPath] = value
            }
        }
        if let mode = section.choice(Key.advisorMode.rawValue, named: \AdvisorMode.rawValue) {
            kernelKSM.advisorMode = mode
        }
        if let zero = section.bool(Key.useZeroPages.rawValue) {
            kernelKSM.useZeroPages = zero
        }
        if let smart = section.bool(Key.smartScan.rawValue) {
            kernelKSM.smartScan = smart
        }
    }
}

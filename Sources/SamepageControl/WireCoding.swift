import SamepageCore
import SamepageModel

/// A JSON object key given by its name: the envelope's keys (`version`, `id`, `ok`, ...) and
/// a request's arguments. The values inside a result have their own keys, in the model.
struct WireKey: CodingKey, ExpressibleByStringLiteral, Hashable {
    var stringValue: String
    var intValue: Int? { nil }

    init(_ name: String) { stringValue = name }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
    init(stringLiteral value: String) { stringValue = value }
}

typealias WireDecoding = KeyedDecodingContainer<WireKey>

// MARK: - Results

extension ControlResult {
    /// The value a response's `"result"` carries: each case's value, written in its wire
    /// form as the model encodes it.
    var value: any Encodable {
        switch self {
        case .guests(let guests): guests
        case .guest(let guest): guest
        case .stats(let stats): stats
        case .run(let mode): mode
        case .tunables(let tunables): tunables
        case .kernelKSM(let status): status
        case .policies(let policies): policies
        case .policyReload(let report): report
        case .sharing(let matrix): matrix
        case .version(let version): version
        case .advice(let advice): advice
        }
    }

    /// Reads the `"result"` of a response to `command`.
    init(wireFrom decoder: any Decoder, for command: ControlCommand) throws {
        switch command {
        case .list: self = .guests(try decoder.singleValueContainer().decode([GuestStatus].self))
        case .dominfo: self = .guest(try GuestStatus(from: decoder))
        case .stats: self = .stats(try DaemonStats(from: decoder))
        case .run: self = .run(try RunMode(from: decoder))
        case .tune: self = .tunables(try Tunables(from: decoder))
        case .ksmTune: self = .kernelKSM(try KernelKSMStatus(from: decoder))
        case .policyShow: self = .policies(try decoder.singleValueContainer().decode([GuestPolicyInfo].self))
        case .policyReload: self = .policyReload(try PolicyReloadReport(from: decoder))
        case .sharing: self = .sharing(try SharingMatrix(from: decoder))
        case .version: self = .version(try VersionInfo(from: decoder))
        case .advise: self = .advice(try decoder.singleValueContainer().decode([GuestAdvice].self))
        }
    }
}

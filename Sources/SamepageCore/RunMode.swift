/// What the scanner does, as `/sys/kernel/mm/ksm/run`.
public enum RunMode: Int, Sendable, CaseIterable {
    /// 0: stop scanning, keep what is merged.
    case stop = 0
    /// 1: scan and merge.
    case merge = 1
    /// 2: stop scanning and unmerge everything (drop all tracking; accounted merges vanish).
    case unmerge = 2

    /// The mode's name, as configuration files (`scan.run`), the control protocol
    /// (`run_mode`, a `run` request's `mode`) and the CLI (`samepage run`) spell it.
    public var name: String {
        switch self {
        case .stop: "stop"
        case .merge: "merge"
        case .unmerge: "unmerge"
        }
    }

    /// The mode with this ``name``, or nil.
    public init?(name: String) {
        guard let mode = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = mode
    }
}

/// The run mode's wire form: the kernel's number and the name, `{"run": 1, "run_mode":
/// "merge"}`; an object that holds it (the daemon's stats) carries both as its own keys.
/// Read back from the number alone.
extension RunMode: Codable {
    public enum CodingKeys: String, CodingKey {
        case run
        case name = "run_mode"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(rawValue, forKey: .run)
        try container.encode(name, forKey: .name)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let raw = try container.decode(Int.self, forKey: .run)
        guard let mode = RunMode(rawValue: raw) else {
            throw DecodingError.dataCorruptedError(
                forKey: .run, in: container, debugDescription: "run \(raw) is not 0, 1 or 2")
        }
        self = mode
    }
}

/// What samepaged itself costs the host, read from `/proc/self` on the agent's thread: the
/// figure beside what it frees, so that the net is visible.
///
/// On the wire: `{"resident_bytes": 90177536, "cpu_seconds": 812.4, "cpu_ratio": 0.021}`,
/// `cpu_ratio` null until two readings lie far enough apart.
public struct AgentCost: Sendable, Equatable, Codable {
    /// Resident memory (RSS) of the whole daemon: `/proc/self/statm`'s second field × page size.
    public var residentBytes: Int
    /// User and system CPU time of every thread since the start (`getrusage(RUSAGE_SELF)`).
    public var cpuSeconds: Double
    /// CPU used over the last readings' span (about 10 s), in cores: 0.02 is 2% of one core.
    public var cpuRatio: Double?

    /// The figures given.
    public init(residentBytes: Int, cpuSeconds: Double, cpuRatio: Double? = nil) {
        self.residentBytes = residentBytes
        self.cpuSeconds = cpuSeconds
        self.cpuRatio = cpuRatio
    }

    public enum CodingKeys: String, CodingKey {
        case residentBytes = "resident_bytes"
        case cpuSeconds = "cpu_seconds"
        case cpuRatio = "cpu_ratio"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(residentBytes, forKey: .residentBytes)
        try c.encode(cpuSeconds, forKey: .cpuSeconds)
        try c.encode(cpuRatio, forKey: .cpuRatio)
    }
}

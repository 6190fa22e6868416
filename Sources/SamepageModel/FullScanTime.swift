/// What the last full scan cost: the figures the scan-time advisor steers by, measured
/// whether or not it is on.
public struct FullScanTime: Sendable, Equatable {
    /// Wall time from the end of the previous full scan to the end of this one, in seconds;
    /// time in which there was nothing to scan (stopped, no guests) is left out.
    public var seconds: Double
    /// The agent thread's CPU time over it, in percent of one core.
    public var cpuPercent: Double

    /// A full scan's cost: its wall time in seconds and its CPU in percent of one core.
    public init(seconds: Double, cpuPercent: Double) {
        self.seconds = seconds
        self.cpuPercent = cpuPercent
    }
}

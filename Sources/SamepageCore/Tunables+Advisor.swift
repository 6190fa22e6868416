/// Who sets `pages_to_scan`: `/sys/kernel/mm/ksm/advisor_mode` (Linux 6.8 and later).
///
/// The wire and file names are the kernel's, `"none"` and `"scan-time"`. The first case is
/// called ``off`` rather than `none`, which an `Optional<AdvisorMode>` would swallow
/// (`changes.advisorMode == .none` would mean "not given").
public enum AdvisorMode: String, Sendable, Hashable, CaseIterable, Codable {
    /// `none` (the kernel's `KSM_ADVISOR_NONE`): `pages_to_scan` is set by hand.
    case off = "none"
    /// `scan-time` (`KSM_ADVISOR_SCAN_TIME`): the scan-time advisor sets `pages_to_scan`
    /// after every full scan.
    case scanTime = "scan-time"

    /// The mode's name, as files, requests and the CLI spell it.
    public var name: String { rawValue }

    /// The kernel's number for the mode (0, 1), as the metrics report it.
    public var number: Int {
        switch self {
        case .off: 0
        case .scanTime: 1
        }
    }
}

extension Tunables {
    /// Sets `advisor_mode` as the kernel's `advisor_mode` file does: a change of mode resets
    /// `pages_to_scan` (ksm.c's `set_advisor_defaults`), to ``advisorMinPagesToScan`` when the
    /// advisor comes on and to `pagesToScanWhenOff` when it goes off. Setting the mode it
    /// already has changes nothing.
    ///
    /// - Returns: Whether the mode changed: a driver then starts its advisor afresh.
    @discardableResult
    public mutating func setAdvisorMode(_ mode: AdvisorMode, pagesToScanWhenOff: Int) -> Bool {
        guard mode != advisorMode else { return false }
        advisorMode = mode
        pagesToScan = mode == .scanTime ? advisorMinPagesToScan : pagesToScanWhenOff
        return true
    }

    /// The knobs once `requested` is set over these, the knobs in force: `requested`, except
    /// that while the advisor is on in both, `pages_to_scan` stays this one's, the advisor's.
    /// (A whole set of knobs is asked for at once, by a reloaded file or a control request
    /// computed a moment earlier; its `pages_to_scan` may be older than the advisor's.)
    public func applying(_ requested: Tunables) -> Tunables {
        var result = requested
        if advisorMode == .scanTime && requested.advisorMode == .scanTime {
            result.pagesToScan = pagesToScan
        }
        return result
    }
}

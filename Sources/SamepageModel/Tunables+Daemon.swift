import SamepageCore

extension Tunables {
    /// The knobs samepaged starts with when its configuration sets none (`[scan]` of
    /// `samepaged.toml`): the kernel's defaults, but the scan-time advisor on, and so
    /// `pages_to_scan` at the advisor's starting point, `advisor_min_pages_to_scan`.
    public static let daemonDefaults = Tunables(
        pagesToScan: Tunables().advisorMinPagesToScan, advisorMode: .scanTime)

    /// samepaged's `pages_to_scan` when the advisor is off and nobody set it (a file with
    /// `advisor_mode = "none"` and no `pages_to_scan`, or `tune` turning the advisor off).
    public static let daemonPagesToScan = 1000
}

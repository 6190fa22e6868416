import SamepageCore

extension Tunables {
    /// The knobs samepaged starts with when its configuration sets none (`[scan]` of
    /// `samepaged.toml`): the kernel's defaults, but 1000 pages a batch.
    public static let daemonDefaults = Tunables(pagesToScan: 1000)
}

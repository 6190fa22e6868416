import SamepageCore

/// What each policy mode would do for one guest now, and what else would free its memory: the
/// answer of `samepage advise` and of `dominfo`'s advice section.
///
/// A pure function of the guest's status (``init(_:)``): every figure comes from what the
/// agent already reports of the guest (its counters, attributed sharing, reclaim status and
/// eligibility, huge-page zero counts, balloon, the kernel's `ksm_stat`), so a test can build
/// the status by hand and the advice can be checked against the guest's `dominfo --json`.
///
/// **Zero pages not freed yet** (``zeroBytesLeft``): for a guest that reclaims now (mode
/// `zero` or `merge`, eligible), its confirmed zero pages waiting for a pause (`pending`);
/// otherwise the engine's confirmed zero pages (`zero_pages`; nothing is queued for a guest
/// that does not reclaim). On hugetlbfs only whole zero huge pages can be given back: a punch
/// inside a huge page frees nothing, so there the figure is the all-zero huge pages.
public struct GuestAdvice: Sendable, Equatable, Codable {
    /// The guest's name and UUID.
    public var name: String
    public var uuid: String
    /// The mode in force.
    public var mode: PolicyMode
    /// Whether its RAM is private to QEMU.
    public var privateRAM: Bool
    /// What each mode would free now, in the order off, report, zero, merge.
    public var modes: [ModeAdvice]
    /// Zero pages found and not freed yet that a punch could give back, in bytes (see above).
    public var zeroBytesLeft: Int
    /// For a shared-memory guest: what private RAM would let the kernel's KSM merge; nil for a
    /// private-RAM guest, and for one not scanned (nothing is known of it).
    public var privateRAMWouldSave: PrivateRAMAdvice?
    /// For a guest on hugetlbfs: how its zero pages fall on its huge pages; nil elsewhere.
    public var hugePages: HugePageZeroes?
    /// Its balloon device; nil without one (or not known).
    public var balloon: Balloon?

    /// What one mode would free now, and whether it could.
    public struct ModeAdvice: Sendable, Equatable, Codable {
        /// The mode advised on.
        public var mode: PolicyMode
        /// Bytes it would give back now (0 for `off` and `report`).
        public var wouldFreeBytes: Int
        /// Whether the mode would free anything at all for this guest now.
        public var eligible: Bool
        /// Why, or why not, in an operator's words.
        public var why: String

        /// The advice on one mode, as given.
        public init(mode: PolicyMode, wouldFreeBytes: Int, eligible: Bool, why: String) {
            self.mode = mode
            self.wouldFreeBytes = wouldFreeBytes
            self.eligible = eligible
            self.why = why
        }

        public enum CodingKeys: String, CodingKey {
            case mode, eligible, why
            case wouldFreeBytes = "would_free_bytes"
        }
    }

    /// What private RAM would give a shared-memory guest: the kernel's KSM would merge its
    /// duplicates (only accounted on shared memory) and, with `use_zero_pages`, its zero pages.
    public struct PrivateRAMAdvice: Sendable, Equatable, Codable {
        /// Its attributed sharing: duplicates only private RAM could realise.
        public var duplicateBytes: Int
        /// Its zero pages not freed yet (``GuestAdvice/zeroBytesLeft``).
        public var zeroBytes: Int
        /// The two together.
        public var totalBytes: Int { duplicateBytes + zeroBytes }

        /// The figures given, in bytes.
        public init(duplicateBytes: Int, zeroBytes: Int) {
            self.duplicateBytes = duplicateBytes
            self.zeroBytes = zeroBytes
        }

        public enum CodingKeys: String, CodingKey {
            case duplicateBytes = "duplicate_bytes"
            case zeroBytes = "zero_bytes"
        }
    }

    public enum CodingKeys: String, CodingKey {
        case name, uuid, mode, modes, balloon
        case privateRAM = "private_ram"
        case zeroBytesLeft = "zero_bytes_left"
        case privateRAMWouldSave = "private_ram_would_save"
        case hugePages = "huge_pages"
    }

    /// Advice made of the values given (tests, and a client reading the wire form).
    public init(
        name: String, uuid: String, mode: PolicyMode, privateRAM: Bool, modes: [ModeAdvice], zeroBytesLeft: Int,
        privateRAMWouldSave: PrivateRAMAdvice?, hugePages: HugePageZeroes?, balloon: Balloon?
    ) {
        self.name = name
        self.uuid = uuid
        self.mode = mode
        self.privateRAM = privateRAM
        self.modes = modes
        self.zeroBytesLeft = zeroBytesLeft
        self.privateRAMWouldSave = privateRAMWouldSave
        self.hugePages = hugePages
        self.balloon = balloon
    }

    /// The advice for a guest, from its status.
    public init(_ g: GuestStatus) {
        let reclaimingNow = g.mode.reclaims && g.reclaim.eligible
        let zeroLeft: Int
        if let huge = g.hugePageZeroes {
            zeroLeft = huge.allZero * huge.pagesPerHugePage * pageSize
        } else {
            zeroLeft = (reclaimingNow ? g.reclaim.pendingPages : g.counters.zeroPages) * pageSize
        }
        let zeroFree = g.reasonIfReclaiming == nil ? zeroLeft : 0
        // An unscanned guest (mode off, or not mapped) has no figures: eligible or not, what
        // a mode would free is unknown until report (or the mode) scans it.
        let unknown = g.mapped ? "" : "; not scanned now, so what it would free is unknown (report finds it)"
        let zeroWhy = (g.reasonIfReclaiming.map { "not eligible: \($0)" }
            ?? "zero pages given back in short pauses of the guest") + unknown
        var modes = [
            ModeAdvice(mode: .off, wouldFreeBytes: 0, eligible: false, why: "never read: nothing is found"),
            ModeAdvice(
                mode: .report, wouldFreeBytes: 0, eligible: false,
                why: "the dry run: scanned and accounted, never paused or changed; zero and merge show what it finds"),
            ModeAdvice(mode: .zero, wouldFreeBytes: zeroFree, eligible: g.reasonIfReclaiming == nil, why: zeroWhy),
        ]
        let duplicates = g.attributedSharingBytes
        if g.privateRAM {
            modes.append(Self.kernelMerge(g, estimate: duplicates + g.counters.zeroPages * pageSize))
        } else {
            let accounted = if !g.mapped {
                "duplicates are accounted only: Linux cannot merge shared memory"
            } else if g.mode == .zero {
                "duplicates are not compared in mode zero (report or merge finds them)"
            } else {
                "duplicates (\(Savings.format(bytes: duplicates))) accounted only: Linux cannot merge shared memory"
            }
            modes.append(ModeAdvice(mode: .merge, wouldFreeBytes: zeroFree, eligible: g.reasonIfReclaiming == nil, why: "\(zeroWhy); \(accounted)"))
        }
        self.init(
            name: g.name, uuid: g.uuid, mode: g.mode, privateRAM: g.privateRAM, modes: modes, zeroBytesLeft: zeroLeft,
            privateRAMWouldSave: g.privateRAM || !g.mapped ? nil : PrivateRAMAdvice(duplicateBytes: duplicates, zeroBytes: zeroLeft),
            hugePages: g.hugePageZeroes, balloon: g.facts.balloon)
    }

    /// Mode `merge` of a private-RAM guest: the kernel's KSM merges it, if samepaged lets it.
    private static func kernelMerge(_ g: GuestStatus, estimate: Int) -> ModeAdvice {
        let merged = g.kernelKSM.map { "; merged by the kernel now: \(Savings.format(bytes: $0.mergedBytes))" } ?? ""
        if let refused = g.kernelKSM?.refused {
            return ModeAdvice(mode: .merge, wouldFreeBytes: 0, eligible: false, why: "the kernel may not merge it: \(refused)\(merged)")
        }
        let governed = g.kernelKSM?.mergeable != nil
            ? "the kernel's KSM merges it (duplicates and zero pages, Samepage's estimate)"
            : "the kernel's KSM would merge it if ksmd runs (samepaged does not govern ksmd; estimate: duplicates and zero pages)"
        return ModeAdvice(mode: .merge, wouldFreeBytes: estimate, eligible: true, why: governed + merged)
    }

    /// The advice for the mode given.
    public func advice(for mode: PolicyMode) -> ModeAdvice? { modes.first { $0.mode == mode } }
}

import SamepageCore

/// `samepage advise` and `dominfo`'s advice section in words: one block per guest, each mode
/// on a line of its own (the one in force marked `*`), then private RAM, huge pages and the
/// balloon, each when it applies.
///
/// ```
/// sp-1: mode merge, shared memory
///   off       frees nothing: never read: frees nothing, finds nothing
///   report    frees nothing: the dry run: scanned and accounted, ...
///   zero      would free 54 MiB now: zero pages given back in short pauses of the guest
/// * merge     would free 54 MiB now: ...
///   private RAM: the kernel's KSM could merge about 186 MiB (duplicates 132 MiB, zero pages 54 MiB)...
/// ```
public enum AdviceText {
    /// The lines of one guest's advice: a two-column mark (`* ` on the mode in force), then
    /// the line.
    public static func lines(_ a: GuestAdvice) -> [String] {
        var lines: [String] = []
        for m in a.modes {
            let mark = m.mode == a.mode ? "* " : "  "
            let name = m.mode.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)
            let figure = m.mode == .off || m.mode == .report
                ? "frees nothing"
                : (m.eligible ? "would free \(Savings.format(bytes: m.wouldFreeBytes)) now" : "would free nothing")
            lines.append("\(mark)\(name)\(figure): \(m.why)")
        }
        if let p = a.privateRAMWouldSave {
            lines.append(
                "  private RAM: the kernel's KSM could merge \(a.mode == .zero ? "at least" : "about") \(Savings.format(bytes: p.totalBytes)) "
                    + "(duplicates \(a.mode == .zero ? "not compared in mode zero" : Savings.format(bytes: p.duplicateBytes)), zero pages \(Savings.format(bytes: p.zeroBytes))); "
                    + "it gives up vhost-user and virtiofs (they need shared memory)\(a.hugePages == nil ? "" : " and hugepages (the kernel's KSM merges no huge page)")")
        }
        if let h = a.hugePages {
            let size = h.pagesPerHugePage * pageSize
            lines.append(
                "  huge pages: \(h.hugePages) of \(Savings.format(bytes: size)); \(h.allZero) all zero "
                    + "(\(Savings.format(bytes: h.allZero * size)), freed whole by a punch), \(h.partlyZero) partly zero "
                    + "holding \(Savings.format(bytes: h.strandedZeroPages * pageSize)) of zero 4 KiB pages nothing can free (stranded)")
        }
        if let b = a.balloon {
            lines.append(
                b.freePageReporting
                    ? "  balloon: \(b.model), free page reporting on: the guest gives back the pages it frees"
                    : "  balloon: \(b.model), free page reporting off: with it on (libvirt <memballoon freePageReporting='on'>) the guest would give back the pages it frees")
        } else {
            lines.append("  balloon: none (a virtio balloon with free page reporting lets the guest give back the pages it frees)")
        }
        return lines
    }

    /// The whole advice of several guests: each guest's heading and lines.
    public static func render(_ advice: [GuestAdvice]) -> String {
        advice.map { a in
            ([heading(a)] + lines(a)).joined(separator: "\n")
        }.joined(separator: "\n\n")
    }

    /// "sp-1: mode merge, shared memory".
    public static func heading(_ a: GuestAdvice) -> String {
        "\(a.name): mode \(a.mode.rawValue), \(a.privateRAM ? "private RAM" : "shared memory")"
    }
}

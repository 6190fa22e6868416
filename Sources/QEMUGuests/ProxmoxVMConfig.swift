import Foundation
import LinuxSystem

/// A Proxmox VE guest's configuration, `/etc/pve/qemu-server/VMID.conf`: the main section's
/// `key: value` lines.
///
/// The file is qemu-server's own format: `key: value` lines, `#` lines for the guest's
/// description (at the top), blank lines, and after the main part one section per snapshot
/// (`[name]`) and for pending changes (`[PENDING]`), each with keys of its own. Only the main
/// section describes the running guest; a snapshot's `lock:` or `hostpci0:` is that
/// snapshot's. So reading stops at the first line that starts with `[`.
///
/// `/etc/pve` is the cluster filesystem (pmxcfs): `qemu-server` there is a link to this
/// node's directory, so a guest's config is found on the node it runs on.
public struct ProxmoxVMConfig: Sendable, Hashable {
    /// The main section's keys and values, the value without the space after the colon.
    /// A key written twice keeps its last value.
    public var values: [String: String]

    /// Parses the text of a `VMID.conf`. Lines that are not `key: value` are passed over.
    public init(text: String) {
        var values: [String: String] = [:]
        // By `isNewline`, not "\n": a CRLF is one Character, which "\n" does not split.
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.drop { $0 == " " || $0 == "\t" }
            if line.hasPrefix("[") { break }  // The first snapshot or pending section.
            if line.hasPrefix("#") || line.isEmpty { continue }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingCharacters(in: .whitespaces)
            guard !key.isEmpty, !key.contains(" ") else { continue }
            values[key] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
        }
        self.values = values
    }

    /// Reads `DIRECTORY/VMID.conf`. Throws `open …` with `ENOENT` when the guest has no
    /// config on this node (deleted, or migrated away).
    public static func read(vmid: Int, directory: String = "/etc/pve/qemu-server") throws(SystemError) -> ProxmoxVMConfig {
        let bytes = try readWholeFile("\(directory)/\(vmid).conf", limit: 1 << 20)
        return ProxmoxVMConfig(text: String(decoding: bytes, as: UTF8.self))
    }

    /// The `lock:` of the main section: a Proxmox operation on the guest is under way
    /// (`backup`, `migrate`, `snapshot`, `snapshot-delete`, `suspending`, `suspended`,
    /// `rollback`, `clone`, `create`, `copy`, `disk`, `mounted`), and it may pause, stop,
    /// copy or move the guest's RAM. Nil when there is none.
    public var lock: String? { values["lock"] }

    /// `name:`, the guest's name in Proxmox (also its `-name`).
    public var name: String? { values["name"] }

    /// `hugepages:` (`2`, `1024` or `any`): RAM from hugetlbfs, which KSM cannot merge.
    public var hugepages: String? { values["hugepages"] }

    /// The indices of the `hostpciN:` keys: PCI devices passed through, which DMA into RAM.
    public var hostPCIDevices: [Int] { indices(of: "hostpci") }

    /// The indices of the `virtiofsN:` keys: virtiofs shares, whose virtiofsd maps guest RAM
    /// (so Proxmox puts it in a shared memfd).
    public var virtiofsShares: [Int] { indices(of: "virtiofs") }

    /// The sorted N of the keys `PREFIXN`.
    private func indices(of prefix: String) -> [Int] {
        values.keys.compactMap { key in key.hasPrefix(prefix) ? Int(key.dropFirst(prefix.count)) : nil }.sorted()
    }
}

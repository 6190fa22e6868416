import Foundation
import KernelKSM

/// A directory shaped like `/sys/kernel/mm/ksm`, in a fresh temporary directory, with the
/// files and formats of this machine's kernel (6.18): every value a number and a newline,
/// `advisor_mode` listing both modes with the selected one in brackets. Tests write here,
/// never to the host's ksmd.
final class FakeKSMDirectory {
    /// The files of `ls /sys/kernel/mm/ksm` on Linux 6.18, with what `cat` showed of each.
    static let linux618: [String: String] = [
        "advisor_max_cpu": "70\n", "advisor_max_pages_to_scan": "30000\n", "advisor_min_pages_to_scan": "500\n",
        "advisor_mode": "[none] scan-time\n", "advisor_target_scan_time": "200\n", "full_scans": "0\n",
        "general_profit": "0\n", "ksm_zero_pages": "0\n", "max_page_sharing": "256\n", "merge_across_nodes": "1\n",
        "pages_scanned": "0\n", "pages_shared": "0\n", "pages_sharing": "0\n", "pages_skipped": "0\n",
        "pages_to_scan": "100\n", "pages_unshared": "0\n", "pages_volatile": "0\n", "run": "0\n",
        "sleep_millisecs": "20\n", "smart_scan": "1\n", "stable_node_chains": "0\n",
        "stable_node_chains_prune_millisecs": "2000\n", "stable_node_dups": "0\n", "use_zero_pages": "0\n",
    ]

    /// The knobs a kernel before smart scan and the advisor (6.6) lacks.
    static let addedSince66 = [
        "smart_scan", "pages_skipped", "pages_scanned", "advisor_mode", "advisor_max_cpu", "advisor_max_pages_to_scan",
        "advisor_min_pages_to_scan", "advisor_target_scan_time",
    ]

    let path: String
    var ksm: KernelKSM { KernelKSM(root: path) }

    init(files: [String: String] = FakeKSMDirectory.linux618) throws {
        var template = Array((NSTemporaryDirectory() + "/samepage-ksm-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw CocoaError(.fileWriteUnknown) }
        path = String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
        for (name, text) in files {
            try set(name, text)
        }
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { path + "/" + name }

    /// The file's text, or nil when there is no such file.
    func contents(_ name: String) -> String? {
        FileManager.default.contents(atPath: file(name)).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Every file's text.
    func allContents() throws -> [String: String] {
        var all: [String: String] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: path) {
            all[name] = contents(name)
        }
        return all
    }

    func set(_ name: String, _ text: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: file(name)))
    }

    func remove(_ name: String) throws {
        try FileManager.default.removeItem(atPath: file(name))
    }

    /// Replaces the file with a directory: opening it for writing fails with `EISDIR`, which
    /// root's writes cannot get past (permissions would not stop root).
    func makeUnwritable(_ name: String) throws {
        try? remove(name)
        try FileManager.default.createDirectory(atPath: file(name), withIntermediateDirectories: false)
    }
}

import Foundation
import KernelKSM
import Logging
@testable import SamepageAgent
import SamepageModel
import Testing

/// A fake `/sys/kernel/mm/ksm` (this machine's files and formats) in a temporary directory.
private final class FakeSysfs {
    let path: String
    init(_ files: [String: String]) throws {
        path = NSTemporaryDirectory() + "samepage-governor-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        for (name, text) in files { try text.write(toFile: "\(path)/\(name)", atomically: false, encoding: .utf8) }
    }
    func read(_ name: String) -> String { (try? String(contentsOfFile: "\(path)/\(name)", encoding: .utf8)) ?? "" }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

private let host: [String: String] = [
    "run": "0\n", "pages_to_scan": "100\n", "sleep_millisecs": "20\n", "max_page_sharing": "256\n",
    "merge_across_nodes": "1\n", "use_zero_pages": "0\n", "smart_scan": "1\n", "advisor_mode": "[none] scan-time\n",
    "advisor_target_scan_time": "200\n", "advisor_max_cpu": "70\n", "advisor_min_pages_to_scan": "500\n",
    "advisor_max_pages_to_scan": "30000\n", "stable_node_chains_prune_millisecs": "2000\n",
    "pages_shared": "0\n", "pages_sharing": "0\n", "pages_unshared": "0\n", "pages_volatile": "0\n",
    "full_scans": "0\n", "ksm_zero_pages": "0\n", "general_profit": "0\n",
]

@Suite("Kernel KSM governor") struct KernelKSMGovernorTests {
    private func governing(threshold: Int) -> KernelKSMConfiguration {
        var configuration = KernelKSMConfiguration()
        configuration.enabled = true
        configuration.trustGroup = "tenant-a"
        configuration.availableThresholdPercent = threshold
        configuration.sleepMillisecs = 50
        return configuration
    }

    @Test func savesAppliesAndPutsBackTheHostsSettings() throws {
        let sysfs = try FakeSysfs(host)
        let saved = sysfs.path + "/../governor-saved-\(UInt32.random(in: 0...UInt32.max)).json"
        defer { try? FileManager.default.removeItem(atPath: saved) }
        // available_threshold_percent 100: ksmd always runs.
        let governor = try KernelKSMGovernor(
            configuration: governing(threshold: 100), ksm: KernelKSM(root: sysfs.path), savedPath: saved, logger: Logger(label: "test"))
        #expect(FileManager.default.fileExists(atPath: saved))
        #expect(sysfs.read("use_zero_pages") == "1\n")
        #expect(sysfs.read("sleep_millisecs") == "50\n")
        // Held stopped until the agent has seen every guest (fail closed).
        #expect(sysfs.read("run") == "0\n")
        #expect(governor.status.why?.hasPrefix("held back") == true)
        governor.tick(now: .now, force: true)
        #expect(sysfs.read("run") == "1\n")
        #expect(governor.status.governed)
        #expect(governor.status.run == 1)
        #expect(governor.status.why?.contains("always") == true)
        // A guest whose merging cannot be switched off stops ksmd at once.
        governor.tick(now: .now, holdBack: "merging is not yet off for g")
        #expect(sysfs.read("run") == "0\n")
        #expect(governor.status.why == "held back: merging is not yet off for g")
        governor.tick(now: .now, force: true)
        #expect(sysfs.read("run") == "1\n")

        governor.restore()
        #expect(sysfs.read("use_zero_pages") == "0\n")
        #expect(sysfs.read("sleep_millisecs") == "20\n")
        #expect(sysfs.read("run") == "0\n")
        #expect(!FileManager.default.fileExists(atPath: saved))
    }

    @Test func newSettingsApplyLiveAndTheHostsStayTheOnesToPutBack() throws {
        let sysfs = try FakeSysfs(host)
        let saved = sysfs.path + "/../governor-saved-\(UInt32.random(in: 0...UInt32.max)).json"
        defer { try? FileManager.default.removeItem(atPath: saved) }
        let governor = try KernelKSMGovernor(
            configuration: governing(threshold: 100), ksm: KernelKSM(root: sysfs.path), savedPath: saved, logger: Logger(label: "test"))
        governor.tick(now: .now, force: true)
        #expect(sysfs.read("run") == "1\n")
        // The same trust group: ksmd keeps running with its new settings.
        var tuned = governing(threshold: 100)
        tuned.sleepMillisecs = 80
        tuned.advisorMode = .off
        tuned.pagesToScan = 1234
        governor.reconfigure(tuned)
        #expect(sysfs.read("sleep_millisecs") == "80\n")
        #expect(sysfs.read("advisor_mode") == "none\n")
        #expect(sysfs.read("pages_to_scan") == "1234\n")
        #expect(sysfs.read("run") == "1\n")
        #expect(governor.status.configuration == tuned)
        // A new trust group stops ksmd at once, until the caller has decided every guest again.
        tuned.trustGroup = "tenant-b"
        governor.reconfigure(tuned)
        #expect(sysfs.read("run") == "0\n")
        #expect(governor.status.trustGroup == "tenant-b")
        // Once it has, the run policy decides again (threshold 100: ksmd runs).
        governor.tick(now: .now, force: true)
        #expect(sysfs.read("run") == "1\n")
        // What goes back at the end is what the host had at start.
        governor.restore()
        #expect(sysfs.read("sleep_millisecs") == "20\n")
        #expect(sysfs.read("pages_to_scan") == "100\n")
        #expect(sysfs.read("use_zero_pages") == "0\n")
    }

    @Test func anEarlierRunsSavedSettingsAreTheHostsAndRestoreSavedPutsThemBack() throws {
        let sysfs = try FakeSysfs(host)
        let saved = sysfs.path + "/../governor-saved-\(UInt32.random(in: 0...UInt32.max)).json"
        defer { try? FileManager.default.removeItem(atPath: saved) }
        // A samepaged that crashed: the kernel holds its settings, the file the host's.
        _ = try KernelKSMGovernor(configuration: governing(threshold: 100), ksm: KernelKSM(root: sysfs.path), savedPath: saved, logger: Logger(label: "test"))
        #expect(sysfs.read("use_zero_pages") == "1\n")
        let next = try KernelKSMGovernor(configuration: governing(threshold: 100), ksm: KernelKSM(root: sysfs.path), savedPath: saved, logger: Logger(label: "test"))
        #expect(next.saved.useZeroPages == false)  // the file's, not the kernel's present 1
        // --resume-paused after a crash.
        #expect(try Agent.restoreKernelKSM(savedPath: saved, root: sysfs.path, logger: Logger(label: "test")))
        #expect(sysfs.read("use_zero_pages") == "0\n")
        #expect(sysfs.read("run") == "0\n")
        #expect(try !Agent.restoreKernelKSM(savedPath: saved, root: sysfs.path, logger: Logger(label: "test")))
    }

    @Test func refusesWithoutKSMOrWithACorruptSavedFile() throws {
        #expect(throws: (any Error).self) {
            try KernelKSMGovernor(configuration: governing(threshold: 100), ksm: KernelKSM(root: "/nonexistent/ksm"), savedPath: "/tmp/x.json", logger: Logger(label: "test"))
        }
        let sysfs = try FakeSysfs(host)
        let saved = sysfs.path + "/../governor-corrupt-\(UInt32.random(in: 0...UInt32.max)).json"
        defer { try? FileManager.default.removeItem(atPath: saved) }
        try "not json".write(toFile: saved, atomically: true, encoding: .utf8)
        #expect(throws: (any Error).self) {
            try KernelKSMGovernor(configuration: governing(threshold: 100), ksm: KernelKSM(root: sysfs.path), savedPath: saved, logger: Logger(label: "test"))
        }
        #expect(sysfs.read("use_zero_pages") == "0\n")  // nothing changed
    }

    @Test func onlyMergeGuestsOfTheKernelsGroupMayBeMerged() {
        let kernel = governing(threshold: 20)
        #expect(KernelKSMGovernor.mergeRefusal(policy: GuestPolicy(mode: .merge, trustGroup: "tenant-a"), kernel: kernel) == nil)
        #expect(KernelKSMGovernor.mergeRefusal(policy: GuestPolicy(mode: .merge, trustGroup: "tenant-b"), kernel: kernel)
            == "trust group \"tenant-b\" is not kernel_ksm.trust_group \"tenant-a\": the kernel merges across every mergeable process")
        #expect(KernelKSMGovernor.mergeRefusal(policy: GuestPolicy(mode: .merge), kernel: kernel)?.hasPrefix("trust group of its own") == true)
        #expect(KernelKSMGovernor.mergeRefusal(policy: GuestPolicy(mode: .report, trustGroup: "tenant-a"), kernel: kernel)
            == "policy mode report: the kernel does not merge it")
        var noGroup = kernel
        noGroup.trustGroup = nil
        #expect(KernelKSMGovernor.mergeRefusal(policy: GuestPolicy(mode: .merge, trustGroup: "tenant-a"), kernel: noGroup)
            == "kernel_ksm.trust_group is not set: the kernel merges no guest")
    }

    @Test func readsTheBackendsOfAQueryMemdevReply() throws {
        let reply = #"{"return":[{"id":"pc.ram","size":268435456,"merge":true,"dump":true,"prealloc":false,"share":false,"host-nodes":[],"policy":"default"},{"id":"ram-node1","size":1024,"merge":false}],"id":"libvirt-17"}"#
        let backends = try #require(KernelMergeControl.memoryBackends(fromQueryMemdev: reply))
        #expect(backends.map(\.id) == ["pc.ram", "ram-node1"])
        #expect(backends.map(\.merge) == [true, false])
        // A backend that cannot be addressed (no id) makes the whole answer unusable: it
        // must not be taken for a backend that is not mergeable.
        #expect(KernelMergeControl.memoryBackends(fromQueryMemdev: #"{"return":[{"id":"pc.ram","merge":true},{"size":1024,"merge":true}]}"#) == nil)
        #expect(KernelMergeControl.memoryBackends(fromQueryMemdev: #"{"error":{"class":"CommandNotFound"}}"#) == nil)
        #expect(KernelMergeControl.memoryBackends(fromQueryMemdev: #"{"return":[]}"#)?.isEmpty == true)
    }

    @Test func qomSetIsBuiltOnlyForQEMUIds() {
        #expect(KernelMergeControl.qomSetMerge(backend: "pc.ram", false)
            == #"{"execute":"qom-set","arguments":{"path":"/objects/pc.ram","property":"merge","value":false}}"#)
        #expect(KernelMergeControl.qomSetMerge(backend: "ram-node0_1", true).contains(#""path":"/objects/ram-node0_1""#))
        // Anything that could escape the JSON string or the path is not sent as a qom-set.
        for id in [#"x","property":"prealloc"#, "a/b", "0ram", "", "pc ram"] {
            #expect(!KernelMergeControl.qomSetMerge(backend: id, false).contains("qom-set"), "\(id)")
        }
    }

    @Test func aGuestAskingForNoSharedPagesIsNeverMerged() {
        let kernel = governing(threshold: 20)
        #expect(KernelKSMGovernor.mergeRefusal(policy: GuestPolicy(mode: .merge, trustGroup: "tenant-a"), kernel: kernel, noSharePages: true)
            == "its domain XML asks for no page sharing (<nosharepages/>)")
    }
}

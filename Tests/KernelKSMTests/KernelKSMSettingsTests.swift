import KernelKSM
import LinuxSystem
import SamepageCore
import SamepageModel
import Testing

/// The kernel's rules for ksmd's knobs (mm/ksm.c's `*_store` functions), written down
/// independently of ``KernelKSMSettings/writes``: what the order is checked against.
struct SimulatedKSM: Equatable {
    var values: [String: String]
    var pagesShared: Int

    /// Applies one write as the kernel would; the errno it would refuse it with, or nil.
    mutating func write(_ name: String, _ text: String) -> Errno? {
        guard values[name] != nil else { return .noSuchFileOrDirectory }
        switch name {
        case "run":
            if text == "2" { pagesShared = 0 }  // unmerge_and_remove_all_rmap_items()
        case "max_page_sharing", "merge_across_nodes":
            // Unchanged is accepted at once; a change needs no shared pages.
            if values[name] != text && pagesShared > 0 { return .resourceBusy }
        case "pages_to_scan":
            if values["advisor_mode"] == "scan-time" { return .invalidArgument }
        case "advisor_mode":
            if values[name] != text {
                // set_advisor_defaults()
                values["pages_to_scan"] = text == "none" ? "100" : values["advisor_min_pages_to_scan"]
            }
        default:
            break
        }
        values[name] = text
        return nil
    }

    mutating func apply(_ writes: [KernelKSMSettings.Write]) -> [String: Errno] {
        var refused: [String: Errno] = [:]
        for write in writes {
            if let errno = self.write(write.name, write.text) { refused[write.name] = errno }
        }
        return refused
    }

    /// The values as a snapshot would read them.
    init(_ settings: KernelKSMSettings, pagesShared: Int = 0) {
        values = [:]
        self.pagesShared = pagesShared
        func put<Value>(_ knob: KernelKSMKnob<Value>, _ value: Value?) {
            if let value { values[knob.name] = value.sysfsText }
        }
        put(.run, settings.run)
        put(.pagesToScan, settings.pagesToScan)
        put(.sleepMillisecs, settings.sleepMillisecs)
        put(.maxPageSharing, settings.maxPageSharing)
        put(.mergeAcrossNodes, settings.mergeAcrossNodes)
        put(.useZeroPages, settings.useZeroPages)
        put(.smartScan, settings.smartScan)
        put(.advisorMode, settings.advisorMode)
        put(.advisorTargetScanTime, settings.advisorTargetScanTime)
        put(.advisorMaxCPU, settings.advisorMaxCPU)
        put(.advisorMinPagesToScan, settings.advisorMinPagesToScan)
        put(.advisorMaxPagesToScan, settings.advisorMaxPagesToScan)
        put(.stableNodeChainsPruneMillisecs, settings.stableNodeChainsPruneMillisecs)
    }
}

@Suite("ksmd's settings, saved and restored") struct KernelKSMSettingsTests {
    /// A 6.18 host's defaults: what `FakeKSMDirectory.linux618` holds.
    let host = KernelKSMSettings(
        run: .stop, pagesToScan: 100, sleepMillisecs: 20, maxPageSharing: 256, mergeAcrossNodes: true,
        useZeroPages: false, smartScan: true, advisorMode: AdvisorMode.off, advisorTargetScanTime: 200,
        advisorMaxCPU: 70, advisorMinPagesToScan: 500, advisorMaxPagesToScan: 30000,
        stableNodeChainsPruneMillisecs: 2000)

    /// What Samepage leaves behind after governing: the advisor on, ksmd running, pages shared.
    let governed = KernelKSMSettings(
        run: .merge, pagesToScan: 2345, sleepMillisecs: 20, maxPageSharing: 512, mergeAcrossNodes: true,
        useZeroPages: true, smartScan: true, advisorMode: .scanTime, advisorTargetScanTime: 60, advisorMaxCPU: 50,
        advisorMinPagesToScan: 500, advisorMaxPagesToScan: 30000, stableNodeChainsPruneMillisecs: 2000)

    @Test func theOrderOfASnapshotWithoutTheAdvisor() {
        #expect(host.writes.map(\.description) == [
            "sleep_millisecs=20", "stable_node_chains_prune_millisecs=2000", "use_zero_pages=0", "smart_scan=1",
            "max_page_sharing=256", "merge_across_nodes=1", "advisor_target_scan_time=200", "advisor_max_cpu=70",
            "advisor_min_pages_to_scan=500", "advisor_max_pages_to_scan=30000", "advisor_mode=none", "pages_to_scan=100",
            "run=0",
        ])
        #expect(host.description.hasPrefix("sleep_millisecs=20 stable_node_chains_prune_millisecs=2000 "))
    }

    @Test func underTheAdvisorPagesToScanIsTheAdvisors() {
        // The kernel refuses pages_to_scan while the advisor is selected; the advisor sets it.
        #expect(governed.writes.map(\.name).contains("pages_to_scan") == false)
        #expect(governed.writes.last == .init(name: "run", text: "1"))
        #expect(governed.writes.suffix(2).first == .init(name: "advisor_mode", text: "scan-time"))
    }

    @Test func unmergeGoesFirst() {
        var saved = host
        saved.run = .unmerge
        #expect(saved.writes.first == .init(name: "run", text: "2"))
        #expect(saved.writes.filter { $0.name == "run" }.count == 1)
        #expect(KernelKSMSettings(sleepMillisecs: 5).writes == [.init(name: "sleep_millisecs", text: "5")])
        #expect(KernelKSMSettings().writes.isEmpty)
    }

    @Test func restoringTheHostAfterGoverningIsAcceptedByTheKernel() {
        // No page shared (ksmd merged nothing, or everything was unmerged): every knob comes back.
        var kernel = SimulatedKSM(governed)
        #expect(kernel.apply(host.writes) == [:])
        #expect(kernel == SimulatedKSM(host))

        // The same writes in the order the knobs are declared, as a naive restore would do
        // them, are not: pages_to_scan is refused under the advisor, and advisor_mode = none
        // then resets it to 100, not to the host's value.
        let declared = [
            "run", "pages_to_scan", "sleep_millisecs", "max_page_sharing", "merge_across_nodes", "use_zero_pages",
            "smart_scan", "advisor_mode", "advisor_target_scan_time", "advisor_max_cpu", "advisor_min_pages_to_scan",
            "advisor_max_pages_to_scan", "stable_node_chains_prune_millisecs",
        ]
        var other = host
        other.pagesToScan = 1000
        let naiveWrites = other.writes.sorted { declared.firstIndex(of: $0.name)! < declared.firstIndex(of: $1.name)! }
        var naive = SimulatedKSM(governed)
        #expect(naive.apply(naiveWrites) == ["pages_to_scan": .invalidArgument])
        #expect(naive.values["pages_to_scan"] == "100")
        var ordered = SimulatedKSM(governed)
        #expect(ordered.apply(other.writes) == [:])
        #expect(ordered.values["pages_to_scan"] == "1000")
        #expect(ordered == SimulatedKSM(other))
    }

    @Test func sharedPagesKeepMaxPageSharingUnlessTheHostHadUnmerged() {
        // Pages shared and the host's run was 0: max_page_sharing is refused (reported), the rest restored.
        var kernel = SimulatedKSM(governed, pagesShared: 40)
        #expect(kernel.apply(host.writes) == ["max_page_sharing": .resourceBusy])
        var expected = SimulatedKSM(host, pagesShared: 40)
        expected.values["max_page_sharing"] = "512"
        #expect(kernel == expected)

        // The host's run was 2: unmerging first lets max_page_sharing change.
        var unmerged = host
        unmerged.run = .unmerge
        var kernel2 = SimulatedKSM(governed, pagesShared: 40)
        #expect(kernel2.apply(unmerged.writes) == [:])
        #expect(kernel2 == SimulatedKSM(unmerged))

        // An unchanged max_page_sharing is accepted whatever is shared.
        var same = governed
        same.advisorMode = AdvisorMode.off
        var kernel3 = SimulatedKSM(governed, pagesShared: 40)
        #expect(kernel3.apply(same.writes) == [:])
    }

    @Test func restoringASnapshotTakenUnderTheAdvisorGivesTheAdvisorBack() {
        var kernel = SimulatedKSM(host)
        var saved = governed
        saved.advisorMinPagesToScan = 700
        #expect(kernel.apply(saved.writes) == [:])
        #expect(kernel.values["advisor_mode"] == "scan-time")
        #expect(kernel.values["pages_to_scan"] == "700")  // where the advisor starts, not 2345
    }

    // MARK: What the configuration asks for

    @Test func theConfigurationOnAKernelWithEveryKnob() {
        let settings = KernelKSMSettings(governing: KernelKSMConfiguration(), on: host)
        #expect(settings == KernelKSMSettings(
            sleepMillisecs: 20, maxPageSharing: 256, useZeroPages: true, smartScan: true, advisorMode: .scanTime,
            advisorTargetScanTime: 200, advisorMaxCPU: 70))
        #expect(settings.run == nil)  // the run policy's
        var kernel = SimulatedKSM(host)
        #expect(kernel.apply(settings.writes) == [:])
        #expect(kernel.values["pages_to_scan"] == "500")  // the advisor's start
    }

    @Test func theConfigurationWithoutTheAdvisor() {
        var configuration = KernelKSMConfiguration(pagesToScan: 1250, sleepMillisecs: 50)
        configuration.advisorMode = .off
        let settings = KernelKSMSettings(governing: configuration, on: governed)
        #expect(settings.advisorMode == AdvisorMode.off)
        #expect(settings.pagesToScan == 1250)
        var kernel = SimulatedKSM(governed)
        #expect(kernel.apply(settings.writes) == [:])
        #expect(kernel.values["pages_to_scan"] == "1250" && kernel.values["sleep_millisecs"] == "50")
    }

    @Test func theConfigurationOnAnOlderKernel() {
        // 6.6: no advisor, no smart scan, no NUMA. Only the knobs it has are set.
        let old = KernelKSMSettings(
            run: .stop, pagesToScan: 100, sleepMillisecs: 20, maxPageSharing: 256, useZeroPages: false,
            stableNodeChainsPruneMillisecs: 2000)
        let settings = KernelKSMSettings(governing: KernelKSMConfiguration(), on: old)
        #expect(settings == KernelKSMSettings(pagesToScan: 100, sleepMillisecs: 20, maxPageSharing: 256, useZeroPages: true))
        #expect(KernelKSMSettings(governing: KernelKSMConfiguration(), on: KernelKSMSettings()) == KernelKSMSettings())
    }

    // MARK: The edge

    @Test func saveGovernRestoreLeavesTheFilesAsTheyWere() throws {
        let fake = try FakeKSMDirectory()
        let before = try fake.allContents()
        let saved = try fake.ksm.settings()
        #expect(saved == host)
        #expect(fake.ksm.apply(KernelKSMSettings(governing: KernelKSMConfiguration(), on: saved)) == [])
        try fake.ksm.write(.run, .merge)
        #expect(fake.contents("use_zero_pages") == "1\n" && fake.contents("advisor_mode") == "scan-time\n")
        // The kernel would show the mode in brackets again.
        try fake.set("advisor_mode", "none [scan-time]\n")
        #expect(fake.ksm.apply(saved) == [])
        // What a restore writes is "none\n"; the kernel shows "[none] scan-time\n" for it.
        #expect(fake.contents("advisor_mode") == "none\n")
        try fake.set("advisor_mode", "[none] scan-time\n")
        #expect(try fake.allContents() == before)
    }

    @Test func aFailedStepDoesNotStopTheRestore() throws {
        let fake = try FakeKSMDirectory()
        try fake.ksm.write(.sleepMillisecs, 999)
        try fake.ksm.write(.run, .merge)
        try fake.ksm.write(.pagesToScan, 7)
        try fake.makeUnwritable("max_page_sharing")
        try fake.remove("smart_scan")
        let failures = fake.ksm.apply(host)
        #expect(failures == [
            SystemError(errno: .noSuchFileOrDirectory, operation: "write 1 to \(fake.file("smart_scan"))"),
            SystemError(errno: .isDirectory, operation: "write 256 to \(fake.file("max_page_sharing"))"),
        ])
        // Every other knob, before and after the failures, was written.
        #expect(fake.contents("sleep_millisecs") == "20\n")
        #expect(fake.contents("pages_to_scan") == "100\n")
        #expect(fake.contents("run") == "0\n")
        #expect(fake.contents("smart_scan") == nil)
    }
}

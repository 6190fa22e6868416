import Glibc
import KernelKSM
import LinuxSystem
import SamepageCore
import SamepageModel
import Testing

@Suite("ksmd's sysfs files") struct KernelKSMTests {
    @Test func readsEveryKnobInTheKernelsFormat() throws {
        let fake = try FakeKSMDirectory()
        let ksm = fake.ksm
        #expect(ksm.isPresent)
        #expect(try ksm.read(.run) == .stop)
        #expect(try ksm.read(.pagesToScan) == 100)
        #expect(try ksm.read(.sleepMillisecs) == 20)
        #expect(try ksm.read(.maxPageSharing) == 256)
        #expect(try ksm.read(.mergeAcrossNodes) == true)
        #expect(try ksm.read(.useZeroPages) == false)
        #expect(try ksm.read(.smartScan) == true)
        #expect(try ksm.read(.advisorMode) == AdvisorMode.off)
        #expect(try ksm.read(.advisorTargetScanTime) == 200)
        #expect(try ksm.read(.advisorMaxCPU) == 70)
        #expect(try ksm.read(.advisorMinPagesToScan) == 500)
        #expect(try ksm.read(.advisorMaxPagesToScan) == 30000)
        #expect(try ksm.read(.stableNodeChainsPruneMillisecs) == 2000)
    }

    @Test func readsTheCounters() throws {
        let fake = try FakeKSMDirectory()
        try fake.set("pages_shared", "12\n")
        try fake.set("pages_sharing", "3400\n")
        try fake.set("pages_unshared", "56\n")
        try fake.set("pages_volatile", "7\n")
        try fake.set("pages_scanned", "123456789\n")
        try fake.set("pages_skipped", "8\n")
        try fake.set("full_scans", "9\n")
        try fake.set("ksm_zero_pages", "1000\n")
        // general_profit is a signed long: the rmap items can cost more than merging saves.
        try fake.set("general_profit", "-4096\n")
        try fake.set("stable_node_chains", "2\n")
        try fake.set("stable_node_dups", "5\n")
        #expect(try fake.ksm.counters() == KernelKSMCounters(
            pagesShared: 12, pagesSharing: 3400, pagesUnshared: 56, pagesVolatile: 7, pagesScanned: 123_456_789,
            pagesSkipped: 8, fullScans: 9, ksmZeroPages: 1000, generalProfit: -4096, stableNodeChains: 2,
            stableNodeDups: 5))
    }

    @Test func writesRoundTripAsEchoWouldWriteThem() throws {
        let fake = try FakeKSMDirectory()
        let ksm = fake.ksm
        try ksm.write(.run, .merge)
        try ksm.write(.pagesToScan, 5)  // shorter than what the file held: the file is rewritten whole
        try ksm.write(.sleepMillisecs, 0)
        try ksm.write(.maxPageSharing, 1024)
        try ksm.write(.mergeAcrossNodes, false)
        try ksm.write(.useZeroPages, true)
        try ksm.write(.smartScan, false)
        try ksm.write(.advisorMode, .scanTime)
        try ksm.write(.advisorTargetScanTime, 30)
        try ksm.write(.advisorMaxCPU, 15)
        try ksm.write(.advisorMinPagesToScan, 64)
        try ksm.write(.advisorMaxPagesToScan, 100_000)
        try ksm.write(.stableNodeChainsPruneMillisecs, 500)
        #expect(fake.contents("run") == "1\n")
        #expect(fake.contents("pages_to_scan") == "5\n")
        #expect(fake.contents("merge_across_nodes") == "0\n")
        #expect(fake.contents("use_zero_pages") == "1\n")
        #expect(fake.contents("advisor_mode") == "scan-time\n")
        // What the kernel then shows, the mode in brackets, reads back as the same mode.
        try fake.set("advisor_mode", "none [scan-time]\n")
        #expect(try ksm.settings() == KernelKSMSettings(
            run: .merge, pagesToScan: 5, sleepMillisecs: 0, maxPageSharing: 1024, mergeAcrossNodes: false,
            useZeroPages: true, smartScan: false, advisorMode: .scanTime, advisorTargetScanTime: 30, advisorMaxCPU: 15,
            advisorMinPagesToScan: 64, advisorMaxPagesToScan: 100_000, stableNodeChainsPruneMillisecs: 500))
        try ksm.write(.run, .unmerge)
        #expect(try ksm.read(.run) == .unmerge)
    }

    @Test func anOlderKernelsMissingKnobsAreNil() throws {
        var files = FakeKSMDirectory.linux618
        for name in FakeKSMDirectory.addedSince66 + ["merge_across_nodes"] {
            files[name] = nil
        }
        let fake = try FakeKSMDirectory(files: files)
        let ksm = fake.ksm
        #expect(try ksm.read(.smartScan) == nil)
        #expect(try ksm.read(.advisorMode) == nil)
        #expect(try ksm.read(.mergeAcrossNodes) == nil)
        #expect(try ksm.settings() == KernelKSMSettings(
            run: .stop, pagesToScan: 100, sleepMillisecs: 20, maxPageSharing: 256, useZeroPages: false,
            stableNodeChainsPruneMillisecs: 2000))
        let counters = try ksm.counters()
        #expect(counters.pagesSkipped == nil && counters.pagesScanned == nil)
        #expect(counters.pagesShared == 0 && counters.generalProfit == 0)
    }

    @Test func aKernelWithoutKSMHasNothing() throws {
        let fake = try FakeKSMDirectory(files: [:])
        let ksm = KernelKSM(root: fake.path + "/ksm")
        #expect(!ksm.isPresent)
        #expect(try ksm.settings() == KernelKSMSettings())
        #expect(try ksm.counters() == KernelKSMCounters())
        #expect(throws: SystemError(errno: .noSuchFileOrDirectory, operation: "write 1 to \(fake.path)/ksm/run")) {
            try ksm.write(.run, .merge)
        }
        // A plain file where the directory should be is not KSM either.
        try fake.set("ksm", "")
        #expect(!ksm.isPresent)
    }

    @Test func aRefusedWriteCarriesTheErrnoAndTheFile() throws {
        let fake = try FakeKSMDirectory()
        let ksm = fake.ksm
        try fake.makeUnwritable("max_page_sharing")
        #expect(throws: SystemError(errno: .isDirectory, operation: "write 512 to \(fake.file("max_page_sharing"))")) {
            try ksm.write(.maxPageSharing, 512)
        }
        // A knob the kernel lacks is ENOENT, and writing it creates no file.
        try fake.remove("smart_scan")
        #expect(throws: SystemError(errno: .noSuchFileOrDirectory, operation: "write 1 to \(fake.file("smart_scan"))")) {
            try ksm.write(.smartScan, true)
        }
        #expect(fake.contents("smart_scan") == nil)
        #expect(try ksm.read(.smartScan) == nil)
    }

    @Test func aFileThatCannotBeReadIsAnErrorNotAnAbsence() throws {
        let fake = try FakeKSMDirectory()
        try fake.makeUnwritable("pages_to_scan")
        #expect(throws: SystemError.self) { try fake.ksm.read(.pagesToScan) }
        #expect(throws: SystemError.self) { try fake.ksm.settings() }
    }

    @Test(arguments: [
        ("run", "3\n"), ("run", "merge\n"), ("pages_to_scan", "\n"), ("pages_to_scan", "1e3\n"),
        ("smart_scan", "y\n"), ("advisor_mode", "none scan-time\n"), ("advisor_mode", "[none] [scan-time]\n"),
        ("advisor_mode", "[fast] none\n"),
    ])
    func textThatIsNotAValueIsEINVAL(name: String, text: String) throws {
        let fake = try FakeKSMDirectory()
        try fake.set(name, text)
        let quoted = String(reflecting: String(text.dropLast()))
        #expect(throws: SystemError(errno: .invalidArgument, operation: "parse \(fake.file(name)): \(quoted)")) {
            try fake.ksm.settings()
        }
    }

    @Test func valuesInTheKernelsWords() {
        #expect(AdvisorMode(sysfsText: "[none] scan-time") == AdvisorMode.off)
        #expect(AdvisorMode(sysfsText: "none [scan-time]") == .scanTime)
        #expect(AdvisorMode(sysfsText: "scan-time") == nil)
        #expect(AdvisorMode.scanTime.sysfsText == "scan-time")
        #expect(RunMode(sysfsText: "2") == .unmerge)
        #expect(RunMode(sysfsText: "-1") == nil)
        #expect(RunMode.stop.sysfsText == "0")
        #expect(Bool(sysfsText: "1") == true && Bool(sysfsText: "0") == false && Bool(sysfsText: "2") == nil)
        #expect(Int(sysfsText: "-12") == -12 && Int(sysfsText: "12 ") == nil)
        #expect(KernelKSMKnob.maxPageSharing.description == "max_page_sharing")
        #expect(KernelKSM(root: "/x/").path("run") == "/x/run")
        #expect(KernelKSM().path("run") == "/sys/kernel/mm/ksm/run")
    }

    /// The parser must understand the real files (read only: tests never write the host's).
    @Test(.enabled(if: KernelKSM().isPresent)) func readsThisHostsKSM() throws {
        let ksm = KernelKSM()
        let settings = try ksm.settings()
        #expect(settings.run != nil)
        #expect(settings.pagesToScan != nil && settings.sleepMillisecs != nil && settings.maxPageSharing != nil)
        let counters = try ksm.counters()
        #expect(counters.pagesShared != nil && counters.pagesSharing != nil && counters.fullScans != nil)
        // This machine runs 6.18, which has every knob.
        if uname().hasPrefix("6.18") {
            #expect(settings.advisorMode != nil && settings.smartScan != nil && settings.advisorMaxPagesToScan != nil)
            #expect(counters.generalProfit != nil && counters.ksmZeroPages != nil && counters.stableNodeDups != nil)
        }
    }

    private func uname() -> String {
        var name = utsname()
        Glibc.uname(&name)
        return withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}

import SamepageCore
import SamepageModel
import Testing
@testable import SamepageConfig

@Suite("[kernel_ksm]") struct KernelKSMConfigurationTests {
    let file = "/etc/samepage/samepaged.toml"

    @Test func offByDefault() throws {
        // Installing Samepage must never change a host's KSM.
        #expect(DaemonConfiguration.defaults.kernelKSM.enabled == false)
        #expect(try DaemonConfiguration.parse(text: "[kernel_ksm]\n", file: file).kernelKSM == KernelKSMConfiguration())
    }

    @Test func everyKeySet() throws {
        let text = """
            [kernel_ksm]
            enabled = true
            trust_group = "web"
            available_threshold_percent = 100
            advisor_mode = "none"
            advisor_target_scan_time = 30
            advisor_max_cpu = 15
            pages_to_scan = 5000
            sleep_millisecs = 0
            max_page_sharing = 2
            use_zero_pages = false
            smart_scan = false
            """
        let parsed = try DaemonConfiguration.parse(text: text, file: file)
        #expect(parsed.kernelKSM == KernelKSMConfiguration(
            enabled: true, trustGroup: "web", availableThresholdPercent: 100, advisorMode: AdvisorMode.off,
            advisorTargetScanTime: 30, advisorMaxCPU: 15, pagesToScan: 5000, sleepMillisecs: 0, maxPageSharing: 2,
            useZeroPages: false, smartScan: false))
        // The other sections are untouched.
        var expected = DaemonConfiguration.defaults
        expected.kernelKSM = parsed.kernelKSM
        #expect(parsed == expected)
    }

    @Test func emptyTrustGroupIsNone() throws {
        let parsed = try DaemonConfiguration.parse(text: "kernel_ksm = { enabled = true, trust_group = \"\" }", file: file)
        #expect(parsed.kernelKSM.enabled)
        #expect(parsed.kernelKSM.trustGroup == nil)
    }

    @Test func limitsAreTheKernels() throws {
        let text = "[kernel_ksm]\npages_to_scan = 4294967295\nsleep_millisecs = 4294967295\nmax_page_sharing = 2147483647\n"
        let parsed = try DaemonConfiguration.parse(text: text, file: file).kernelKSM
        #expect(parsed.pagesToScan == 4_294_967_295)
        #expect(parsed.sleepMillisecs == 4_294_967_295)
        #expect(parsed.maxPageSharing == 2_147_483_647)
    }

    @Test(arguments: [
        ("enabled = 1", "kernel_ksm.enabled must be a boolean (true or false), not an integer"),
        ("enabld = true", "unknown key \"enabld\" in [kernel_ksm]; did you mean \"enabled\"?"),
        ("trust_group = \"a b\"", "kernel_ksm.trust_group = \"a b\" may contain only letters, digits, '.', '_' and '-'"),
        ("available_threshold_percent = 0", "kernel_ksm.available_threshold_percent = 0 is out of range: expected 1 to 100 (percent; 100 always runs)"),
        ("available_threshold_percent = 101", "kernel_ksm.available_threshold_percent = 101 is out of range: expected 1 to 100 (percent; 100 always runs)"),
        ("advisor_mode = \"scan_time\"", "kernel_ksm.advisor_mode = \"scan_time\" is not valid: expected one of \"none\", \"scan-time\""),
        ("advisor_target_scan_time = 0", "kernel_ksm.advisor_target_scan_time = 0 is out of range: expected 1 or more (seconds)"),
        ("advisor_max_cpu = 0", "kernel_ksm.advisor_max_cpu = 0 is out of range: expected 1 to 100 (percent)"),
        ("advisor_max_cpu = 101", "kernel_ksm.advisor_max_cpu = 101 is out of range: expected 1 to 100 (percent)"),
        ("pages_to_scan = 0", "kernel_ksm.pages_to_scan = 0 is out of range: expected 1 to 4294967295"),
        ("pages_to_scan = 4294967296", "kernel_ksm.pages_to_scan = 4294967296 is out of range: expected 1 to 4294967295"),
        ("sleep_millisecs = -1", "kernel_ksm.sleep_millisecs = -1 is out of range: expected 0 to 4294967295"),
        // The kernel's max_page_sharing has no 0 = unlimited, unlike [scan]'s.
        ("max_page_sharing = 0", "kernel_ksm.max_page_sharing = 0 is out of range: expected at least 2 (the kernel has no unlimited)"),
        ("use_zero_pages = \"yes\"", "kernel_ksm.use_zero_pages must be a boolean (true or false), not a string"),
        ("smart_scan = 0", "kernel_ksm.smart_scan must be a boolean (true or false), not an integer"),
    ])
    func errors(key: String, message: String) {
        let errors = DaemonConfiguration.validate(text: "# samepaged\n[kernel_ksm]\n\(key)\n", file: file)
        #expect(errors.count == 1, "\(errors)")
        #expect(errors.first?.line == 3)
        #expect(errors.first?.message == message)
        #expect(errors.first?.description == "\(file):3: \(message)")
    }

    @Test func everyBadKeyIsReportedAtItsLine() {
        let text = "[kernel_ksm]\nenabled = true\nadvisor_max_cpu = 0\nsmart_scan = true\nmax_page_sharing = 1\n"
        let errors = DaemonConfiguration.validate(text: text, file: file)
        #expect(errors.map(\.line) == [3, 5])
        #expect(throws: errors.first!) { try DaemonConfiguration.parse(text: text, file: file) }
    }

    @Test func notATable() {
        let errors = DaemonConfiguration.validate(text: "kernel_ksm = true\n", file: file)
        #expect(errors.map(\.message) == ["[kernel_ksm] must be a table, not a boolean (true or false)"])
    }
}

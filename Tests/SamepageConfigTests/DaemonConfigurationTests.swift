import Foundation
import SamepageCore
import SamepageModel
import Testing
@testable import SamepageConfig
import TestSupport

@Suite struct DaemonConfigurationTests {
    let file = "/etc/samepage/samepaged.toml"

    func onlyError(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> ConfigError? {
        let errors = DaemonConfiguration.validate(text: text, file: file)
        #expect(errors.count == 1, "\(errors)", sourceLocation: sourceLocation)
        if let first = errors.first {
            #expect(throws: first, sourceLocation: sourceLocation) { try DaemonConfiguration.parse(text: text, file: file) }
        }
        return errors.first
    }

    @Test func builtInDefaults() {
        let defaults = DaemonConfiguration.defaults
        #expect(defaults.libvirtURI == "qemu:///system")
        #expect(defaults.controlSocket == "/run/samepage/samepaged.sock")
        #expect(defaults.controlGroup == nil)
        #expect(defaults.configuredControlSocketMode == nil)
        #expect(defaults.controlSocketMode == 0o600)
        #expect(defaults.metricsAddress == HostAndPort(host: "127.0.0.1", port: 10460))
        #expect(defaults.metricsPerGuest)
        #expect(defaults.metricsWebConfigFile == nil)
        #expect(defaults.run == .merge)
        // The advisor on, and pages_to_scan at its starting point, advisor_min_pages_to_scan.
        #expect(defaults.tunables == Tunables(
            pagesToScan: 500, sleepMillisecs: 20, maxKernelPages: 0, maxPageSharing: 256, smartScan: true,
            advisorMode: .scanTime, advisorTargetScanTime: 200, advisorMaxCPU: 70, advisorMinPagesToScan: 500,
            advisorMaxPagesToScan: 30_000))
        #expect(defaults.policyDirectory == "/etc/samepage/guests.d")
        #expect(defaults.defaultPolicy == GuestPolicy())
        #expect(defaults.reclaimMaxBytes == 0)
        #expect(defaults.reclaimPauseThreadNice == 0)
        #expect(defaults.kernelKSM == KernelKSMConfiguration(
            enabled: false, trustGroup: nil, availableThresholdPercent: 20, advisorMode: .scanTime, advisorTargetScanTime: 200,
            advisorMaxCPU: 70, pagesToScan: 100, sleepMillisecs: 20, maxPageSharing: 256, useZeroPages: true, smartScan: true))
        #expect(DaemonConfiguration.defaultPath == "/etc/samepage/samepaged.toml")
    }

    /// The documented file and the code cannot drift apart: the shipped file lists every key
    /// with its built-in default.
    @Test func shippedFileIsTheDefaults() throws {
        let path = repositoryRoot.appendingPathComponent("config/samepaged.toml").path
        #expect(try DaemonConfiguration.load(path: path) == DaemonConfiguration.defaults)

        // Every key of every section is present, so removing any line changes nothing.
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let keys = text.split(separator: "\n").filter { $0.contains(" = ") && !$0.hasPrefix("#") }
        #expect(keys.map { $0.split(separator: " ").first! }.sorted() == [
            "address", "admin_group", "advisor_max_cpu", "advisor_max_cpu", "advisor_max_pages_to_scan", "advisor_min_pages_to_scan", "advisor_mode", "advisor_mode", "advisor_target_scan_time", "advisor_target_scan_time", "available_threshold_percent", "directory", "enabled", "enabled", "group", "hypervisor_users", "journal", "max_bytes", "max_cpu_pressure", "max_kernel_pages", "max_page_sharing", "max_page_sharing", "max_pages", "max_pause_ms", "max_pause_ms_per_minute", "mode", "mode", "pages_to_scan", "pause_thread_nice", "per_guest", "proxmox_config_directory", "proxmox_run_directory", "qmp_timeout_ms", "reclaim_hugetlbfs", "run", "sleep_millisecs", "sleep_millisecs", "smart_scan", "smart_scan", "socket", "trust_group", "uri", "use_zero_pages", "web_config_file",
        ])
        // pages_to_scan is documented, commented out: with the advisor on, the file may not set it.
        #expect(text.contains("\n# pages_to_scan = 1000\n"))
    }

    @Test func shippedPolicySamplesAreValid() throws {
        let example = repositoryRoot.appendingPathComponent("config/guests.d/example.toml.sample").path
        #expect(try PolicyFile.load(path: example) == GuestPolicy(mode: .merge, trustGroup: "web"))
        let fallback = repositoryRoot.appendingPathComponent("config/guests.d/default.toml.sample").path
        #expect(try PolicyFile.load(path: fallback) == GuestPolicy(mode: .report))
    }

    @Test func emptyIsTheDefaults() throws {
        #expect(try DaemonConfiguration.parse(text: "", file: file) == .defaults)
        #expect(try DaemonConfiguration.parse(text: "[scan]\n[control]\n", file: file) == .defaults)
    }

    @Test func everyKeySet() throws {
        let text = """
            [libvirt]
            uri = "qemu+ssh://root@host/system"
            [control]
            socket = "/tmp/samepage.sock"
            group = "libvirt"
            mode = "0640"
            [metrics]
            address = "[::1]:9100"
            per_guest = false
            web_config_file = "/etc/samepage/web.yml"
            [scan]
            run = "stop"
            advisor_mode = "none"
            pages_to_scan = 250
            advisor_target_scan_time = 60
            advisor_max_cpu = 25
            advisor_min_pages_to_scan = 100
            advisor_max_pages_to_scan = 9000
            sleep_millisecs = 0
            max_kernel_pages = 100000
            max_page_sharing = 0
            smart_scan = false
            [policy]
            directory = "/srv/guests.d"
            [policy.default]
            mode = "report"
            trust_group = "lab"
            max_pause_ms = 5
            [reclaim]
            max_bytes = 1073741824
            max_cpu_pressure = 35
            pause_thread_nice = -10
            journal = "/srv/samepage/paused.json"
            [qemu]
            enabled = false
            proxmox_run_directory = "/srv/pve/run"
            proxmox_config_directory = "/srv/pve/etc"
            qmp_timeout_ms = 500
            """
        var expected = DaemonConfiguration()
        expected.qemuGuests = QEMUGuestsConfiguration(
            enabled: false, proxmoxRunDirectory: "/srv/pve/run", proxmoxConfigDirectory: "/srv/pve/etc", qmpTimeout: .milliseconds(500))
        expected.libvirtURI = "qemu+ssh://root@host/system"
        expected.controlSocket = "/tmp/samepage.sock"
        expected.controlGroup = "libvirt"
        expected.configuredControlSocketMode = 0o640
        expected.metricsAddress = HostAndPort(host: "::1", port: 9100)
        expected.metricsPerGuest = false
        expected.reclaimPauseThreadNice = -10
        expected.metricsWebConfigFile = "/etc/samepage/web.yml"
        expected.run = .stop
        expected.tunables = Tunables(
            pagesToScan: 250, sleepMillisecs: 0, maxKernelPages: 100000, maxPageSharing: 0, smartScan: false,
            advisorMode: .off, advisorTargetScanTime: 60, advisorMaxCPU: 25, advisorMinPagesToScan: 100,
            advisorMaxPagesToScan: 9000)
        expected.policyDirectory = "/srv/guests.d"
        expected.defaultPolicy = GuestPolicy(mode: .report, trustGroup: "lab", maxPauseMs: 5)
        expected.reclaimMaxBytes = 1 << 30
        expected.reclaimMaxCPUPressure = 35
        expected.pauseJournal = "/srv/samepage/paused.json"
        let parsed = try DaemonConfiguration.parse(text: text, file: file)
        #expect(parsed == expected)
        #expect(parsed.controlSocketMode == 0o640)
    }

    @Test func otherSpellings() throws {
        // Dotted keys and inline tables are the same configuration.
        let text = """
            scan.run = "unmerge"
            policy = { default = { mode = "zero" } }
            metrics.address = ""
            metrics.web_config_file = ""
            control = { group = "kvm" }
            """
        let parsed = try DaemonConfiguration.parse(text: text, file: file)
        #expect(parsed.run == .unmerge)
        #expect(parsed.defaultPolicy.mode == .zero)
        #expect(parsed.metricsAddress == nil)
        #expect(parsed.metricsWebConfigFile == nil)
        #expect(parsed.controlGroup == "kvm")
        #expect(parsed.controlSocketMode == 0o660)
    }

    @Test(arguments: [
        ("[libvrit]\nuri = \"x\"", 2, "unknown section [libvrit]; did you mean \"libvirt\"?"),
        ("[scan]\npages_to_scn = 5", 3, "unknown key \"pages_to_scn\" in [scan]; did you mean \"pages_to_scan\"?"),
        // A bad pages_to_scan is reported once, for its value (not also for the advisor).
        ("[scan]\npages_to_scan = 0", 3, "pages_to_scan = 0 is out of range: expected at least 1"),
        // Above the kernel's unsigned int, as a tune request is refused.
        ("[scan]\npages_to_scan = 4294967296", 3, "pages_to_scan = 4294967296 is out of range: expected at most 4294967295"),
        ("[scan]\nsleep_millisecs = -1", 3, "sleep_millisecs = -1 is out of range: expected 0 to 60000"),
        // More would keep the agent's loop from ending pauses and answering for that long.
        ("[scan]\nsleep_millisecs = 60001", 3, "sleep_millisecs = 60001 is out of range: expected 0 to 60000"),
        ("[scan]\nmax_kernel_pages = -5", 3, "max_kernel_pages = -5 is out of range: expected 0 (unlimited) or more"),
        ("[scan]\nmax_page_sharing = 1", 3, "max_page_sharing = 1 is out of range: expected 0 (unlimited) or at least 2"),
        ("[scan]\npages_to_scan = \"many\"", 3, "scan.pages_to_scan must be an integer, not a string"),
        ("[qemu]\nqmp_timeout_ms = 5", 3, "qemu.qmp_timeout_ms = 5 is out of range: expected 10 to 5000 (milliseconds)"),
        ("[qemu]\nproxmox_run_directory = \"run/qemu-server\"", 3, "qemu.proxmox_run_directory"),
        ("[scan]\nsmart_scan = 1", 3, "scan.smart_scan must be a boolean (true or false), not an integer"),
        ("[scan]\nrun = \"go\"", 3, "scan.run = \"go\" is not valid: expected one of \"stop\", \"merge\", \"unmerge\""),
        ("[scan]\nrun = 1", 3, "scan.run must be a string, not an integer"),
        // pages_to_scan is the advisor's unless the file turns it off.
        ("[scan]\npages_to_scan = 2000", 3,
         "scan.pages_to_scan cannot be set while the scan-time advisor sets it (advisor_mode is \"scan-time\" by default): add advisor_mode = \"none\" to [scan] to set it by hand"),
        ("[scan]\nadvisor_mode = \"scan-time\"\npages_to_scan = 2000", 4,
         "scan.pages_to_scan cannot be set while the scan-time advisor sets it (scan.advisor_mode = \"scan-time\"): add advisor_mode = \"none\" to [scan] to set it by hand"),
        ("[scan]\nadvisor_mode = \"auto\"", 3, "scan.advisor_mode = \"auto\" is not valid: expected one of \"none\", \"scan-time\""),
        // A misspelt mode is the only error: what it meant for pages_to_scan is unknown.
        ("[scan]\nadvisor_mode = \"nonee\"\npages_to_scan = 5", 3, "scan.advisor_mode = \"nonee\" is not valid"),
        ("[scan]\nadvisor_mode = 0", 3, "scan.advisor_mode must be a string, not an integer"),
        ("[scan]\nadvisor_target_scan_time = 0", 3, "advisor_target_scan_time = 0 is out of range: expected at least 1 (seconds)"),
        ("[scan]\nadvisor_max_cpu = 0", 3, "advisor_max_cpu = 0 is out of range: expected 1 to 100 (percent of one core)"),
        ("[scan]\nadvisor_max_cpu = 101", 3, "advisor_max_cpu = 101 is out of range: expected 1 to 100 (percent of one core)"),
        ("[scan]\nadvisor_min_pages_to_scan = 0", 3, "advisor_min_pages_to_scan = 0 is out of range: expected at least 1"),
        ("[scan]\nadvisor_max_pages_to_scan = 0", 3, "advisor_max_pages_to_scan = 0 is out of range: expected at least 1"),
        ("[scan]\nadvisor_max_pages_to_scan = 400", 3,
         "advisor_max_pages_to_scan = 400 is out of range: expected at least advisor_min_pages_to_scan (500)"),
        ("[scan]\nadvisor_min_pages_to_scan = 5000\nadvisor_max_pages_to_scan = 4000", 4,
         "advisor_max_pages_to_scan = 4000 is out of range: expected at least advisor_min_pages_to_scan (5000)"),
        ("libvirt = \"qemu:///system\"", 2, "[libvirt] must be a table, not a string"),
        ("[libvirt]\nuri = \"system\"", 3, "libvirt.uri = \"system\" is not a libvirt URI (like \"qemu:///system\"; \"\" turns libvirt off)"),
        ("[control]\nsocket = \"samepaged.sock\"", 3, "control.socket = \"samepaged.sock\" is not an absolute path"),
        ("[control]\nmode = 600", 3, "control.mode must be a string of octal digits, like \"0660\", not an integer"),
        ("[control]\nmode = \"0666\"", 3, "control.mode = \"0666\" gives other users access: use a group instead"),
        ("[control]\nmode = \"rw\"", 3, "control.mode = \"rw\" is not a file mode: expected 3 or 4 octal digits, like \"0600\""),
        ("[control]\nmode = \"4600\"", 3, "control.mode = \"4600\" sets setuid, setgid or sticky bits, which a socket does not take"),
        ("[control]\nmode = \"0060\"", 3, "control.mode = \"0060\" must give the owner read and write access (0600)"),
        ("[control]\ngroup = \"-x\"", 3, "control.group = \"-x\" is not a group name (letters, digits, '.', '_', '-', at most 32 characters; \"\" for root only)"),
        ("[metrics]\naddress = \"9464\"", 3, "metrics.address = \"9464\" is not HOST:PORT (like \"127.0.0.1:10460\" or \"[::1]:10460\"; \"\" disables metrics)"),
        ("[metrics]\naddress = \"localhost:70000\"", 3, "metrics.address = \"localhost:70000\" is not HOST:PORT (like \"127.0.0.1:10460\" or \"[::1]:10460\"; \"\" disables metrics)"),
        ("[metrics]\nweb_config_file = \"web.yml\"", 3, "metrics.web_config_file = \"web.yml\" is not an absolute path"),
        ("[metrics]\nweb_config_file = true", 3, "metrics.web_config_file must be a string"),
        ("[policy]\ndirectory = \"guests.d\"", 3, "policy.directory = \"guests.d\" is not an absolute path"),
        ("[policy.default]\nmax_pause_ms = 0", 3, "policy.default.max_pause_ms = 0 is out of range: expected 1 to 1000"),
        ("[policy.default]\nmode = \"all\"", 3, "policy.default.mode = \"all\" is not valid: expected one of \"off\", \"report\", \"zero\", \"merge\""),
        ("[policy.default]\nmod = \"off\"", 3, "unknown key \"mod\" in [policy.default]; did you mean \"mode\"?"),
        ("[policy]\ndefault = \"off\"", 3, "[policy.default] must be a table, not a string"),
        ("[reclaim]\nmax_bytes = -1", 3, "reclaim.max_bytes = -1 is out of range: expected 0 (unlimited) or more"),
        ("[reclaim]\nmax_bytes = \"1G\"", 3, "reclaim.max_bytes must be an integer, not a string"),
        ("[reclaim]\nmax_cpu_pressure = 0", 3, "reclaim.max_cpu_pressure = 0 is out of range: expected 1 to 100 (percent; 100 never waits)"),
        ("[reclaim]\nmax_cpu_pressure = 101", 3, "reclaim.max_cpu_pressure = 101 is out of range: expected 1 to 100 (percent; 100 never waits)"),
        ("[reclaim]\npause_thread_nice = 5", 3, "reclaim.pause_thread_nice = 5 is out of range: expected -20 to 0 (0 leaves the thread's priority as it is)"),
        ("[reclaim]\njournal = \"paused.json\"", 3, "reclaim.journal = \"paused.json\" is not an absolute path"),
        ("[scan]\n[scan]", 3, "syntax error: "),
        ("verbose = true", 2, "unknown key \"verbose\" (expected \"libvirt\", \"control\", \"metrics\", \"scan\", \"policy\", \"reclaim\", \"qemu\", \"kernel_ksm\")"),
    ])
    func errors(body: String, line: Int, message: String) {
        let error = onlyError("# samepaged\n\(body)\n")
        #expect(error?.line == line)
        #expect(error?.message.hasPrefix(message) == true, "\(String(describing: error))")
        #expect(error?.description.hasPrefix("\(file):\(line): ") == true)
    }

    @Test func socketPathTooLong() throws {
        let path = "/" + String(repeating: "s", count: 107)
        let error = onlyError("[control]\n\nsocket = \"\(path)\"")
        #expect(error?.line == 3)
        #expect(error?.message == "control.socket is too long for a Unix socket (108 bytes; at most 107)")
        #expect(try DaemonConfiguration.parse(text: "[control]\nsocket = \"/\(String(repeating: "s", count: 106))\"", file: file)
            .controlSocket.utf8.count == 107)
    }

    /// Who sets pages_to_scan: the advisor from advisor_min_pages_to_scan, or the file, or
    /// samepaged's 1000 when the advisor is off and the file gives none.
    @Test func advisorModeDecidesPagesToScan() throws {
        let scanTime = try DaemonConfiguration.parse(text: "[scan]\nadvisor_min_pages_to_scan = 800\n", file: file)
        #expect(scanTime.tunables.advisorMode == .scanTime)
        #expect(scanTime.tunables.pagesToScan == 800)

        let offDefault = try DaemonConfiguration.parse(text: "[scan]\nadvisor_mode = \"none\"\n", file: file)
        #expect(offDefault.tunables.advisorMode == .off)
        #expect(offDefault.tunables.pagesToScan == 1000)

        let offByHand = try DaemonConfiguration.parse(
            text: "[scan]\npages_to_scan = 4000\nadvisor_mode = \"none\"\n", file: file)
        #expect(offByHand.tunables.advisorMode == .off)
        #expect(offByHand.tunables.pagesToScan == 4000)

        // The bounds are checked once all are read, in whatever order the file has them.
        let bounds = try DaemonConfiguration.parse(
            text: "[scan]\nadvisor_max_pages_to_scan = 100\nadvisor_min_pages_to_scan = 50\n", file: file)
        #expect(bounds.tunables.advisorMaxPagesToScan == 100)
        #expect(bounds.tunables.advisorMinPagesToScan == 50)
        #expect(bounds.tunables.pagesToScan == 50)
    }

    @Test func everyBadTunableIsReported() {
        let errors = DaemonConfiguration.validate(
            text: "[scan]\npages_to_scan = 0\nsleep_millisecs = 5\nmax_page_sharing = 1\n", file: file
        )
        #expect(errors.map(\.line) == [2, 4])
    }

    @Test func files() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let missing = directory.file("samepaged.toml")
        #expect(throws: ConfigError(file: missing, message: "cannot open: No such file or directory")) {
            try DaemonConfiguration.load(path: missing)
        }
        #expect(try DaemonConfiguration.loadIfPresent(path: missing) == .defaults)

        try directory.write("samepaged.toml", "[scan]\nrun = \"stop\"\n")
        #expect(try DaemonConfiguration.loadIfPresent(path: missing).run == .stop)
        #expect(try DaemonConfiguration.load(path: missing).run == .stop)

        try directory.write("samepaged.toml", "[scan]\nrun = \"stop\"\n[bad]\n")
        let unknown = "unknown section [bad] (expected \"libvirt\", \"control\", \"metrics\", \"scan\", \"policy\", \"reclaim\", \"qemu\", \"kernel_ksm\")"
        #expect(throws: ConfigError(file: missing, line: 3, column: 1, message: unknown)) {
            try DaemonConfiguration.loadIfPresent(path: missing)
        }
        #expect(DaemonConfiguration.validate(path: missing).map(\.description) == ["\(missing):3: \(unknown)"])
    }

    @Test func hostAndPort() {
        #expect(HostAndPort("127.0.0.1:9464") == HostAndPort(host: "127.0.0.1", port: 9464))
        #expect(HostAndPort("metrics.example.org:80") == HostAndPort(host: "metrics.example.org", port: 80))
        #expect(HostAndPort("[::]:9464") == HostAndPort(host: "::", port: 9464))
        #expect(HostAndPort("[fe80::1%eth0]:1")?.host == "fe80::1%eth0")
        #expect(HostAndPort("[::1]:9464")?.description == "[::1]:9464")
        #expect(HostAndPort("0.0.0.0:9464")?.description == "0.0.0.0:9464")
        for bad in ["", ":9464", "host", "host:", "host:0", "host:65536", "host:+1", "::1:9464", "[::1]", "[::1]9464", "[]:1", "a b:1", "h:123456"] {
            #expect(HostAndPort(bad) == nil, "\(bad)")
        }
    }

    // MARK: Fuzz

    @Test func randomInputsAndMutations() throws {
        let shipped = try String(contentsOfFile: repositoryRoot.appendingPathComponent("config/samepaged.toml").path, encoding: .utf8)
        var parsed = 0
        for seed in UInt64(0)..<fuzzIterations {
            var rng = SplitMix64(seed: seed &+ 2_000_000)
            let bytes = seed % 2 == 0 ? mutate(shipped, using: &rng) : randomInput(using: &rng)
            let name = "fuzz-\(seed).toml"
            traceFuzzInput(bytes, label: "daemon")
            do {
                _ = try DaemonConfiguration.parse(bytes: bytes, file: name)
                parsed += 1
            } catch {
                #expect(error.description.hasPrefix(name + ":"), "seed \(seed)")
                #expect(error.line != nil || isWholeFileError(error.message), "seed \(seed): \(error)")
                if let line = error.line {
                    #expect((1...lineCount(bytes)).contains(line), "seed \(seed): \(error)")
                }
            }
        }
        #expect(parsed > 10)
    }

    /// A Proxmox VE host has no libvirtd: `uri = ""` turns libvirt off.
    @Test func anEmptyLibvirtURITurnsLibvirtOff() throws {
        let configuration = try DaemonConfiguration.parse(text: "[libvirt]\nuri = \"\"\n", file: "samepaged.toml")
        #expect(configuration.libvirtURI == "")
        #expect(DaemonConfiguration.defaults.libvirtURI == "qemu:///system")
    }

    /// `control.admin_group` is read like `control.group`, and either asks for mode 0660.
    @Test func controlAdminGroup() throws {
        let both = try DaemonConfiguration.parse(text: "[control]\ngroup = \"samepage\"\nadmin_group = \"samepage-admin\"\n", file: "samepaged.toml")
        #expect(both.controlGroup == "samepage")
        #expect(both.controlAdminGroup == "samepage-admin")
        #expect(both.controlSocketMode == 0o660)
        let adminOnly = try DaemonConfiguration.parse(text: "[control]\nadmin_group = \"samepage-admin\"\n", file: "samepaged.toml")
        #expect(adminOnly.controlGroup == nil)
        #expect(adminOnly.controlSocketMode == 0o660)
        #expect(DaemonConfiguration.defaults.controlAdminGroup == nil)
        #expect(throws: (any Error).self) { try DaemonConfiguration.parse(text: "[control]\nadmin_group = \"a b\"\n", file: "samepaged.toml") }
    }
}

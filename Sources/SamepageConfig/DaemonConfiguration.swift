import Glibc
import SamepageCore
import SamepageModel

/// The configuration of `samepaged`, from `/etc/samepage/samepaged.toml` or built in.
///
/// The file's sections are `[libvirt]`, `[control]`, `[metrics]`, `[scan]`, `[policy]` (with
/// `[policy.default]`, the keys of a policy file), `[reclaim]`, `[qemu]` and `[kernel_ksm]`. The shipped
/// `config/samepaged.toml` documents every key with its default, and a test checks that it
/// parses to exactly ``defaults``: it is the schema, kept in one place.
///
/// Every key is optional; unknown sections and keys are errors, as are wrong types and
/// invalid values, each reported with the file and line of its key.
public struct DaemonConfiguration: Sendable, Equatable {
    /// Where the daemon looks for its configuration when not told otherwise.
    public static let defaultPath = HostDefaults.configurationFile

    /// The built-in configuration: what the daemon runs with when there is no file.
    public static let defaults = DaemonConfiguration()

    /// The largest configuration file accepted, in bytes.
    public static let maximumSize = ConfigSource.maximumSize

    // MARK: [libvirt]

    /// The libvirt connection URI (`libvirt.uri`); empty when libvirt is off (a Proxmox VE
    /// host: no connection is ever attempted, guests are found in /proc only).
    public var libvirtURI = HostDefaults.libvirtURI

    // MARK: [control]

    /// The control socket's path (`control.socket`).
    public var controlSocket = HostDefaults.controlSocket
    /// A group whose members may read through the control socket besides root
    /// (`control.group`): list, dominfo, stats, policy show, sharing; nil for none.
    public var controlGroup: String?
    /// A group whose members may also change what samepaged does (`control.admin_group`):
    /// run, tune, ksm tune, policy reload; nil for root only.
    public var controlAdminGroup: String?
    /// The control socket's file mode as configured (`control.mode`); nil to let
    /// ``controlSocketMode`` follow the group.
    public var configuredControlSocketMode: UInt32?

    /// The control socket's file mode: as configured, else `0o600`, or `0o660` with a group.
    public var controlSocketMode: UInt32 {
        configuredControlSocketMode ?? (controlGroup == nil && controlAdminGroup == nil ? 0o600 : 0o660)
    }

    // MARK: [metrics]

    /// Where the Prometheus endpoint listens (`metrics.address`); nil when disabled.
    public var metricsAddress: HostAndPort? = HostAndPort(host: "127.0.0.1", port: 10460)
    /// Whether the endpoint shows single guests (`metrics.per_guest`): the per-guest series
    /// and the status page's guests and sharing matrix. Off for an endpoint that tenants can
    /// reach: per-guest sharing figures are a side channel.
    public var metricsPerGuest = true
    /// The endpoint's web configuration file (`metrics.web_config_file`): TLS and basic
    /// authentication in Prometheus exporter-toolkit's format, read by ``WebConfigurationFile``;
    /// nil serves plain HTTP to anyone who can connect. Read at start only (a reload checks it
    /// and says so, but the endpoint keeps what it started with until a restart).
    public var metricsWebConfigFile: String?

    // MARK: [scan]

    /// Whether the scanner runs at start (`scan.run`).
    public var run: RunMode = .merge
    /// The scanner's knobs (`scan.pages_to_scan` and the others, named as the kernel's).
    /// With the advisor on (`scan.advisor_mode = "scan-time"`, the default) the file may not
    /// set `pages_to_scan`, which is then `advisor_min_pages_to_scan`, the advisor's start.
    public var tunables = Tunables.daemonDefaults

    // MARK: [policy]

    /// The directory of per-guest policy files (`policy.directory`).
    public var policyDirectory = HostDefaults.policyDirectory
    /// The policy of guests with neither a policy file nor a `default.toml` (`[policy.default]`).
    public var defaultPolicy = GuestPolicy()

    // MARK: [reclaim]

    /// A host-wide cap on reclaimed bytes (`reclaim.max_bytes`); 0 = unlimited.
    public var reclaimMaxBytes = 0
    /// Reclaim waits while the host's CPU pressure (`/proc/pressure/cpu`, some) is over this
    /// many percent (`reclaim.max_cpu_pressure`, 1 to 100; 100 never waits).
    public var reclaimMaxCPUPressure = 10
    /// The nice value of the thread that pauses a guest, for the pause's length
    /// (`reclaim.pause_thread_nice`, -20 to 0; 0 leaves it as it is).
    public var reclaimPauseThreadNice = 0
    /// The journal of guests paused for reclaim (`reclaim.journal`), which `samepaged
    /// --resume-paused` replays: both read it from the same file, so they cannot disagree.
    public var pauseJournal = HostDefaults.pauseJournal

    // MARK: [qemu]

    /// QEMU guests outside libvirt, found by their processes and paused over QMP (`[qemu]`).
    public var qemuGuests = QEMUGuestsConfiguration()

    // MARK: [kernel_ksm]

    /// How samepaged governs the kernel's own KSM (`[kernel_ksm]`); off by default.
    public var kernelKSM = KernelKSMConfiguration()

    /// The built-in configuration; see ``defaults``.
    public init() {}

    // MARK: Loading

    /// Reads and parses the configuration file at `path`, which must exist.
    ///
    /// - Throws: The file's first error, in file order; ``validate(path:)`` lists them all.
    public static func load(path: String) throws(ConfigError) -> DaemonConfiguration {
        try evaluate(source: { () throws(ConfigError) in try ConfigSource(path: path) }).get()
    }

    /// Reads the configuration file at `path` if there is one; the built-in ``defaults`` if not.
    public static func loadIfPresent(path: String = defaultPath) throws(ConfigError) -> DaemonConfiguration {
        var status = stat()
        if stat(path, &status) != 0, errno == ENOENT {
            return defaults
        }
        return try load(path: path)
    }

    /// Parses the text of a configuration file, throwing its first error.
    ///
    /// - Parameters:
    ///   - text: The file's content.
    ///   - file: How the file is named in errors, usually its path.
    public static func parse(text: String, file: String) throws(ConfigError) -> DaemonConfiguration {
        try evaluate(source: { () throws(ConfigError) in try ConfigSource(bytes: text.utf8, file: file) }).get()
    }

    /// Parses the raw bytes of a configuration file (which need not be UTF-8).
    public static func parse(bytes: some Collection<UInt8>, file: String) throws(ConfigError) -> DaemonConfiguration {
        try evaluate(source: { () throws(ConfigError) in try ConfigSource(bytes: bytes, file: file) }).get()
    }

    /// Every error in the text of a configuration file, in file order.
    public static func validate(text: String, file: String) -> [ConfigError] {
        evaluate(source: { () throws(ConfigError) in try ConfigSource(bytes: text.utf8, file: file) }).errors
    }

    /// Every error in the configuration file at `path`, in file order.
    public static func validate(path: String) -> [ConfigError] {
        evaluate(source: { () throws(ConfigError) in try ConfigSource(path: path) }).errors
    }

    private static func evaluate(source: () throws(ConfigError) -> ConfigSource) -> Evaluation<DaemonConfiguration> {
        Evaluation { () throws(ConfigError) in
            let document = try ConfigDocument(source: source())
            var root = document.rootReader()
            var configuration = DaemonConfiguration()
            configuration.read(&root)
            root.finish()
            return (configuration, document)
        }
    }

    // MARK: Reading sections

    private mutating func read(_ root: inout TableReader) {
        root.section("libvirt") { readLibvirt(&$0) }
        root.section("control") { readControl(&$0) }
        root.section("metrics") { section in
            if let address = section.string("address") {
                if address.isEmpty {
                    metricsAddress = nil
                } else if let parsed = HostAndPort(address) {
                    metricsAddress = parsed
                } else {
                    section.error(
                        at: "address",
                        "\(section.name("address")) = \(TableReader.quoted(address)) is not HOST:PORT "
                            + "(like \"127.0.0.1:10460\" or \"[::1]:10460\"; \"\" disables metrics)"
                    )
                }
            }
            if let perGuest = section.bool("per_guest") { metricsPerGuest = perGuest }
            if let file = section.string("web_config_file") {
                if file.isEmpty {
                    metricsWebConfigFile = nil
                } else if let problem = Self.pathProblem(file) {
                    section.error(at: "web_config_file", "\(section.name("web_config_file")) = \(TableReader.quoted(file)) \(problem)")
                } else {
                    metricsWebConfigFile = file
                }
            }
        }
        root.section("scan") { readScan(&$0) }
        root.section("policy") { section in
            if let directory = section.string("directory", checkedBy: Self.pathProblem) {
                policyDirectory = directory
            }
            section.section("default") { defaultPolicy = GuestPolicy.read(from: &$0) }
        }
        root.section("reclaim") { section in
            if let bytes = section.integer("max_bytes", in: 0...Int.max, describedAs: "0 (unlimited) or more") {
                reclaimMaxBytes = bytes
            }
            if let percent = section.integer("max_cpu_pressure", in: 1...100, describedAs: "1 to 100 (percent; 100 never waits)") {
                reclaimMaxCPUPressure = percent
            }
            if let nice = section.integer("pause_thread_nice", in: -20...0, describedAs: "-20 to 0 (0 leaves the thread's priority as it is)") {
                reclaimPauseThreadNice = nice
            }
            if let journal = section.string("journal", checkedBy: Self.pathProblem) {
                pauseJournal = journal
            }
        }
        root.section("qemu") { section in
            if let enabled = section.bool("enabled") { qemuGuests.enabled = enabled }
            if let directory = section.string("proxmox_run_directory", checkedBy: Self.pathProblem) {
                qemuGuests.proxmoxRunDirectory = directory
            }
            if let directory = section.string("proxmox_config_directory", checkedBy: Self.pathProblem) {
                qemuGuests.proxmoxConfigDirectory = directory
            }
            if let timeout = section.integer(
                "qmp_timeout_ms", in: QEMUGuestsConfiguration.qmpTimeoutRange, describedAs: "10 to 5000 (milliseconds)")
            {
                qemuGuests.qmpTimeout = .milliseconds(timeout)
            }
            if let users = section.strings("hypervisor_users") {
                if let bad = users.first(where: { $0.isEmpty || $0.contains(where: { $0 == ":" || $0 == "/" || $0.isWhitespace }) }) {
                    section.error(at: "hypervisor_users", "\(section.name("hypervisor_users")) holds \(TableReader.quoted(bad)), which is not a user name")
                } else {
                    qemuGuests.hypervisorUsers = users
                }
            }
        }
        root.section("kernel_ksm") { readKernelKSM(&$0) }
    }

    private mutating func readLibvirt(_ section: inout TableReader) {
        guard let uri = section.string("uri") else { return }
        if uri.isEmpty || Self.isLibvirtURI(uri) {
            libvirtURI = uri
        } else {
            section.error(
                at: "uri",
                "\(section.name("uri")) = \(TableReader.quoted(uri)) is not a libvirt URI (like \"qemu:///system\"; \"\" turns libvirt off)"
            )
        }
    }

    private mutating func readControl(_ section: inout TableReader) {
        if let socket = section.string("socket", checkedBy: Self.pathProblem) {
            if socket.utf8.count > Self.maximumSocketPathLength {
                section.error(
                    at: "socket",
                    "\(section.name("socket")) is too long for a Unix socket (\(socket.utf8.count) bytes; "
                        + "at most \(Self.maximumSocketPathLength))"
                )
            } else {
                controlSocket = socket
            }
        }
        for key in ["group", "admin_group"] {
            guard let group = section.string(key) else { continue }
            let value: String?
            if group.isEmpty {
                value = nil
            } else if Self.isGroupName(group) {
                value = group
            } else {
                section.error(
                    at: key,
                    "\(section.name(key)) = \(TableReader.quoted(group)) is not a group name "
                        + "(letters, digits, '.', '_', '-', at most 32 characters; \"\" for root only)"
                )
                continue
            }
            if key == "group" { controlGroup = value } else { controlAdminGroup = value }
        }
        if let value = section.value("mode") {
            // A TOML integer cannot be written in octal with a leading zero, so modes are strings.
            if value.type == .int {
                section.error(
                    at: "mode",
                    "\(section.name("mode")) must be a string of octal digits, like \"0660\", not an integer"
                )
            } else if value.type != .string {
                section.error(
                    at: "mode", "\(section.name("mode")) must be a string, not \(TableReader.article(value.type))"
                )
            } else if let mode = value.string, mode.isEmpty {
                configuredControlSocketMode = nil
            } else if let mode = value.string {
                switch Self.parseMode(mode) {
                case .success(let parsed):
                    configuredControlSocketMode = parsed
                case .failure(let problem):
                    section.error(at: "mode", "\(section.name("mode")) = \(TableReader.quoted(mode)) \(problem.reason)")
                }
            }
        }
    }

    private mutating func readScan(_ section: inout TableReader) {
        if let run = section.choice("run", named: \RunMode.name) {
            self.run = run
        }
        // Each knob is checked on its own range, so that every bad one is reported; the knobs
        // that bound each other are checked at the end, once all are read.
        var badKeys: Set<String> = []
        for knob in Tunables.integerKnobs {
            let key = knob.key.stringValue
            guard let value = section.integer(key) else {
                if section.contains(key) { badKeys.insert(key) }  // of the wrong type, reported
                continue
            }
            if let expected = knob.problem(with: value) {
                section.error(at: key, TunableError(knob.key, value: value, expected: expected).description)
                badKeys.insert(key)
            } else {
                tunables[keyPath: knob.keyPath] = value
            }
        }
        if let smart = section.bool(Tunables.CodingKeys.smartScan.stringValue) {
            tunables.smartScan = smart
        }
        readAdvisorMode(&section, badKeys: &badKeys)
        if badKeys.isEmpty {
            do {
                try tunables.validate()
            } catch {
                section.error(at: error.name, error.description)
            }
        }
    }

    /// `advisor_mode`, and with it who sets `pages_to_scan`: the advisor (starting from
    /// `advisor_min_pages_to_scan`), or the file (``Tunables/daemonPagesToScan`` when it
    /// does not).
    private mutating func readAdvisorMode(_ section: inout TableReader, badKeys: inout Set<String>) {
        let modeKey = Tunables.CodingKeys.advisorMode.stringValue
        let pagesKey = Tunables.CodingKeys.pagesToScan.stringValue
        let givenMode = section.choice(modeKey, named: \AdvisorMode.name)
        // A misspelt mode is reported alone: what it meant for pages_to_scan is unknown.
        if section.contains(modeKey) && givenMode == nil { return }
        let mode = givenMode ?? Tunables.daemonDefaults.advisorMode
        tunables.advisorMode = mode
        // A pages_to_scan already reported (a bad value) is not reported again.
        if badKeys.contains(pagesKey) { return }
        let pagesGiven = section.contains(pagesKey)
        switch mode {
        case .scanTime:
            if pagesGiven {
                let why = givenMode == nil ? "\(modeKey) is \"scan-time\" by default" : "\(section.name(modeKey)) = \"scan-time\""
                section.error(
                    at: pagesKey,
                    "\(section.name(pagesKey)) cannot be set while the scan-time advisor sets it (\(why)): "
                        + "add \(modeKey) = \"none\" to [scan] to set it by hand")
                badKeys.insert(pagesKey)
            }
            tunables.pagesToScan = tunables.advisorMinPagesToScan
        case .off:
            if !pagesGiven { tunables.pagesToScan = Tunables.daemonPagesToScan }
        }
    }
}

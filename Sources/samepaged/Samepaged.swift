import Glibc
import ArgumentParser
import Foundation
import Logging
import SamepageAgent
import SamepageConfig
import SamepageControl
import SamepageCore
import SamepageMetrics
import SamepageModel
import ServiceLifecycle
import UnixSignals

/// `samepaged`: the Samepage host daemon.
@main
struct Samepaged: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "samepaged",
        abstract: "The Samepage daemon: KSM for QEMU guests with shared-memory RAM.",
        discussion: """
            Follows the guests of a libvirt connection, maps the RAM backends of those whose \
            policy allows it, and runs KSM's merging loop over them. Configuration comes from \
            --config, else /etc/samepage/samepaged.toml if it exists, else built-in defaults \
            (qemu:///system, socket /run/samepage/samepaged.sock, policies in \
            /etc/samepage/guests.d); the options below override it. SIGTERM or SIGINT stop the \
            daemon gracefully; SIGHUP reloads the configuration and the policies without \
            losing what the engine has learned. Talk to it with 'samepage'.
            """,
        version: SamepageRelease.version
    )

    @Option(help: "Configuration file (TOML); must exist when given.")
    var config: String?

    @Option(name: .customLong("connect"), help: "libvirt URI (overrides libvirt.uri).")
    var uri: String?

    @Option(help: "Control socket path (overrides control.socket).")
    var socket: String?

    @Option(help: "Policy directory (overrides policy.directory).")
    var policyDir: String?

    @Option(help: ArgumentHelp(
        "Prometheus endpoint (overrides metrics.address).",
        discussion: "HOST:PORT or [IPV6]:PORT; \"\" disables it.", valueName: "host:port"))
    var metricsAddress: String?

    @Option(help: "How much to log.")
    var logLevel: Logger.Level = .info

    @Option(help: "The journal of guests paused for reclaim (overrides reclaim.journal).")
    var pauseJournal: String?

    @Flag(help: "Resume every guest the pause journal says samepaged paused, then exit (for the service manager, after the daemon stops).")
    var resumePaused = false

    @Flag(help: ArgumentHelp(
        "Check the configuration file and every policy file it leads to, then exit; starts nothing.",
        discussion: "Prints each problem as FILE:LINE: message on standard error and exits 1, or a one-line summary and exits 0. The unit's ExecReload runs it before SIGHUP."))
    var checkConfig = false

    func run() async throws {
        if checkConfig { return try Self.checkConfiguration(config: config, policyDirectory: policyDir) }
        let logLevel = self.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = logLevel
            return handler
        }
        let logger = Logger(label: "samepaged")

        let settings: DaemonConfiguration
        do {
            settings = try loadSettings()
        } catch {
            logger.critical("configuration: \(error)")
            throw ExitCode.failure
        }
        if resumePaused {
            // ksmd's settings first, whatever the pauses' replay does, if a samepaged that
            // governed ksmd did not put them back.
            var kernelFailed = false
            do {
                if try Agent.restoreKernelKSM(savedPath: Self.kernelKSMSaved(settings), logger: logger) {
                    logger.notice("kernel_ksm: the host's ksmd settings were put back after samepaged stopped")
                }
            } catch {
                logger.critical("kernel_ksm: \(error)")
                kernelFailed = true
            }
            do {
                let left = try Agent.resumePaused(
                    journal: settings.pauseJournal, uri: settings.libvirtURI,
                    qmpTimeout: max(settings.qemuGuests.qmpTimeout, .seconds(1)), logger: logger)
                if left > 0 || kernelFailed { throw ExitCode.failure }
                return
            } catch let exit as ExitCode {
                throw exit
            } catch {
                logger.critical("resume paused guests: \(error)")
                throw ExitCode.failure
            }
        }

        // The endpoint's TLS and users, read and loaded before anything is bound: a web
        // configuration file that cannot be used stops the daemon, rather than serving plain
        // HTTP to whoever connects.
        let security: MetricsServer.Security
        do {
            security = try Self.metricsSecurity(settings)
        } catch {
            logger.critical("metrics.web_config_file: \(error)")
            throw ExitCode.failure
        }

        // A journal that cannot be read might hold a pause: refuse to start, loudly, rather
        // than serve with an agent that cannot end it. The journal's path goes into the index
        // that --resume-paused replays, so a later edit of reclaim.journal cannot hide it.
        do {
            try JournalIndex().register(settings.pauseJournal)
            _ = try PauseJournal(path: settings.pauseJournal).entries()
        } catch {
            logger.critical("\(error)")
            throw ExitCode.failure
        }

        let policies = PolicyDirectory(directory: settings.policyDirectory, defaultPolicy: settings.defaultPolicy)
        for error in policies.reload() { logger.error("policy rejected: \(error)") }

        var agentConfiguration = AgentConfiguration()
        agentConfiguration.uri = settings.libvirtURI
        agentConfiguration.tunables = settings.tunables
        agentConfiguration.run = settings.run
        agentConfiguration.policy = { policies.policy(for: $0, vmid: $1).policy }
        agentConfiguration.pauseJournal = settings.pauseJournal
        agentConfiguration.reclaimMaxBytes = settings.reclaimMaxBytes
        agentConfiguration.reclaimMaxCPUPressure = Double(settings.reclaimMaxCPUPressure)
        agentConfiguration.pauseThreadNice = settings.reclaimPauseThreadNice == 0 ? nil : Int32(settings.reclaimPauseThreadNice)
        agentConfiguration.kernelKSM = settings.kernelKSM
        agentConfiguration.qemuGuests = settings.qemuGuests
        agentConfiguration.kernelKSMSaved = Self.kernelKSMSaved(settings)
        let exporter = MetricsExporter(version: SamepageRelease.version, perGuest: settings.metricsPerGuest)
        agentConfiguration.pauseObserver = { exporter.record($0) }
        let agent = Agent(configuration: agentConfiguration, logger: Logger(label: "samepaged.agent"))

        let control = DaemonControl(agent: agent, policies: policies, version: SamepageRelease.version)
        let server: ControlServer
        do {
            server = try ControlServer(
                path: settings.controlSocket, mode: mode_t(settings.controlSocketMode),
                group: try groupID(settings.controlGroup, key: "control.group"),
                adminGroup: try groupID(settings.controlAdminGroup, key: "control.admin_group"), handler: control.handle)
        } catch {
            logger.critical("control socket: \(error)")
            throw ExitCode.failure
        }
        var metrics: MetricsServer?
        if let address = settings.metricsAddress {
            do {
                // Both run on NIO's blocking pool: the matrix waits (briefly) for the agent's thread.
                let perGuest = settings.metricsPerGuest
                let sharing = RecentValue(maximumAge: .seconds(10)) { perGuest ? agent.sharingMatrix(timeout: .seconds(2)) : nil }
                let content = MetricsServer.Content(
                    metrics: { exporter.render(agent.snapshot, process: .current()) },
                    statusPage: {
                        StatusPage.render(
                            agent.snapshot, sharing: sharing.value,
                            perGuest: perGuest, version: SamepageRelease.version)
                    })
                metrics = try await MetricsServer(
                    host: address.host, port: Int(address.port), security: security, content: content)
            } catch {
                // The control socket was bound, not served: closing it removes the file.
                await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                    Thread { server.stop(); done.resume() }.start()
                }
                logger.critical("metrics: cannot listen on \(address): \(error)")
                throw ExitCode.failure
            }
        }
        logger.notice("samepaged \(SamepageRelease.version) listening on \(settings.controlSocket); libvirt \(settings.libvirtURI.isEmpty ? "off" : settings.libvirtURI); policies in \(settings.policyDirectory); metrics \(metrics.map { "at \($0.scheme)://\($0.boundAddress)/metrics, status page at /\(security.authenticator == nil ? "" : ", basic authentication")" } ?? "off")")

        // One lifecycle: each component's run() is its life, and graceful shutdown ends them in
        // the reverse order: the hangup handler, the metrics endpoint, the control socket,
        // then the agent (which ends its pauses and releases every guest). An agent that stops
        // on its own fails the group, and with it the daemon.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: agent, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup),
            .init(service: server),
        ]
        if let metrics { services.append(.init(service: metrics)) }
        let notifier = ServiceManagerNotifier(environment: ProcessInfo.processInfo.environment)
        services.append(.init(service: HangupService(
            daemon: self, agent: agent, policies: policies, metrics: metrics, started: settings, logger: logger,
            notifier: notifier,
            status: "serving \(settings.controlSocket)")))
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        do {
            try await group.run()
        } catch {
            logger.critical("samepaged stops: \(error)")
            throw ExitCode.failure
        }
        logger.notice("samepaged stopped")
        // Everything that must outlive us is written by now (journal, punch record, ksmd's
        // settings). A blocking call that outlived its deadline may still run on a thread of
        // its own (libvirt parsing XML, say): exit's destructors would free memory under it,
        // which crashed samepaged at exit (SIGSEGV in memcpy beside a libxml2 thread). So the
        // process ends here, without them.
        fflush(nil)  // every output stream: the log's last lines
        _exit(0)
    }

    /// `--check-config`: the configuration and the policies it leads to, checked; nothing
    /// started, nothing written.
    static func checkConfiguration(config: String?, policyDirectory: String?) throws {
        let check = ConfigurationCheck.run(configuration: config, policyDirectory: policyDirectory)
        guard check.isValid else {
            for error in check.errors { FileHandle.standardError.write(Data("\(error)\n".utf8)) }
            let count = check.errors.count == 1 ? "1 error" : "\(check.errors.count) errors"
            FileHandle.standardError.write(Data("samepaged: configuration check failed: \(count)\n".utf8))
            throw ExitCode.failure
        }
        print("samepaged: configuration ok: \(check.summary)")
    }

    /// The host's ksmd settings are kept next to the pause journal, which is on the state
    /// directory's file system: `/var/lib/samepage/kernel-ksm.json` by default.
    static func kernelKSMSaved(_ settings: DaemonConfiguration) -> String {
        settings.pauseJournal == HostDefaults.pauseJournal
            ? HostDefaults.kernelKSMSaved
            : (settings.pauseJournal as NSString).deletingLastPathComponent + "/kernel-ksm.json"
    }

    /// What `metrics.web_config_file` asks of the endpoint, loaded: nothing without one.
    static func metricsSecurity(_ settings: DaemonConfiguration) throws -> MetricsServer.Security {
        guard let file = settings.metricsWebConfigFile else { return MetricsServer.Security() }
        return try MetricsServer.Security(WebConfigurationFile.load(path: file))
    }

    /// The configuration file's settings with the command line's overrides.
    func loadSettings() throws -> DaemonConfiguration {
        var settings = try config.map { try DaemonConfiguration.load(path: $0) } ?? DaemonConfiguration.loadIfPresent()
        if let uri { settings.libvirtURI = uri }
        if let socket { settings.controlSocket = socket }
        if let policyDir { settings.policyDirectory = policyDir }
        if let pauseJournal { settings.pauseJournal = pauseJournal }
        if let metricsAddress {
            if metricsAddress.isEmpty {
                settings.metricsAddress = nil
            } else if let parsed = HostAndPort(metricsAddress) {
                settings.metricsAddress = parsed
            } else {
                throw ValidationError("--metrics-address: \"\(metricsAddress)\" is not HOST:PORT or [IPV6]:PORT with a port from 1 to 65535")
            }
        }
        return settings
    }

    private func groupID(_ name: String?, key: String) throws -> gid_t? {
        guard let name else { return nil }
        guard let entry = getgrnam(name) else {
            throw ValidationError("\(key): no group named \(name)")
        }
        return entry.pointee.gr_gid
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// SIGHUP and the service manager: re-reads the configuration file, the policy directory
/// and the metrics endpoint's web configuration file on SIGHUP (a bad file is logged and
/// changes nothing; the engine keeps its state either way; the endpoint's address and
/// per_guest take effect at the next start only), and tells systemd (`Type=notify`) when the
/// daemon serves, reloads and stops. It runs
/// once the other services have started (the control socket is bound by then), and is the
/// first to see graceful shutdown.
struct HangupService: Service {
    let daemon: Samepaged
    let agent: Agent
    let policies: PolicyDirectory
    /// The metrics endpoint, if it runs, and the configuration it was started with (the
    /// address and per_guest it keeps until a restart).
    let metrics: MetricsServer?
    let started: DaemonConfiguration
    let logger: Logger
    let notifier: ServiceManagerNotifier
    let status: String

    func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        notifier.ready(status: status)
        await cancelWhenGracefulShutdown {
            for await _ in hangups {
                notifier.reloading()
                // Reading the files blocks: on a thread of its own, not the cooperative pool.
                await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                    let thread = Thread { reload(); done.resume() }
                    thread.name = "samepaged-reload"
                    thread.start()
                }
                notifier.ready(status: status)
            }
        }
        notifier.stopping()
    }

    private func reload() {
        logger.notice("SIGHUP: reloading configuration and policies")
        let settings: DaemonConfiguration
        do {
            settings = try daemon.loadSettings()
        } catch {
            logger.error("configuration rejected, keeping the current one: \(error)")
            return
        }
        do {
            try agent.setTunables(settings.tunables)
        } catch {
            logger.error("configuration: \(error)")
        }
        // [kernel_ksm]: what the file says now, over any `tune --kernel-…` since; sent at every
        // reload, so that one that could not take hold of ksmd before is tried again.
        if case .failure(let refusal) = agent.setKernelKSM(settings.kernelKSM) {
            logger.error("configuration: kernel_ksm: \(refusal)")
        }
        reloadMetrics(settings)
        for error in policies.reconfigure(directory: settings.policyDirectory, defaultPolicy: settings.defaultPolicy) {
            logger.error("policy rejected: \(error)")
        }
        agent.reloadPolicies()
    }

    /// The web configuration file, read again (a renewed certificate, a changed password):
    /// new connections use it; one that cannot be used is logged and the endpoint keeps its
    /// current one. The address and per_guest are bound at start: a change waits for a restart.
    private func reloadMetrics(_ settings: DaemonConfiguration) {
        if settings.metricsAddress != started.metricsAddress || settings.metricsPerGuest != started.metricsPerGuest {
            logger.warning("metrics.address and metrics.per_guest changed: they take effect when samepaged restarts")
        }
        guard let metrics else {
            if settings.metricsWebConfigFile != nil {
                logger.warning("metrics.web_config_file: the endpoint is off; it takes effect when samepaged restarts with an address")
            }
            return
        }
        // Taking TLS or authentication away by a reload is too easy a mistake to make
        // silently: removing the key keeps what the endpoint has until a restart.
        let protected = metrics.security.tls != nil || metrics.security.authenticator != nil
        if settings.metricsWebConfigFile == nil {
            if protected {
                logger.warning("metrics.web_config_file removed: the endpoint keeps TLS and authentication until samepaged restarts")
            }
            return
        }
        do {
            metrics.replaceSecurity(try Samepaged.metricsSecurity(settings))
        } catch {
            logger.error("metrics.web_config_file rejected, the endpoint keeps its current TLS and users: \(error)")
        }
    }
}

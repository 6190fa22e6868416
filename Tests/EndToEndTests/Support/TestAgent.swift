import SamepageAgent
import SamepageCore
import SamepageModel

/// An agent for a test: report mode for the named guests (in one trust group), off for any
/// other guest on the host, small batches so a scan is always under way.
func makeAgent(guests: Set<String>, log: CapturedLog, pagesToScan: Int = 20_000, sleep: Int = 0, groups: [String: String] = [:]) -> Agent {
    var configuration = AgentConfiguration()
    // Unlimited sharing per node, so an independent count by content is exact.
    // A fixed rate: the advisor off, as it is in Tunables() (the daemon's default has it on).
    configuration.tunables = Tunables(
        pagesToScan: pagesToScan, sleepMillisecs: sleep, maxPageSharing: 0, smartScan: false, advisorMode: .off)
    configuration.reconcileInterval = .seconds(1)
    configuration.maximumReconnectDelay = .seconds(1)
    configuration.policy = { guest, _ in
        guests.contains(guest.name) ? GuestPolicy(mode: .report, trustGroup: groups[guest.name] ?? "e2e") : GuestPolicy(mode: .off)
    }
    return Agent(configuration: configuration, logger: log.logger())
}

extension AgentSnapshot {
    func guest(_ name: String) -> GuestStatus? { guests.first { $0.name == name } }
}

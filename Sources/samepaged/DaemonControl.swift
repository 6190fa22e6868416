import SamepageAgent
import SamepageConfig
import SamepageControl
import SamepageCore
import SamepageModel

/// Answers control requests from the agent's published state and by posting to the agent.
/// Runs on the control server's connection threads; everything it touches is thread-safe.
struct DaemonControl: Sendable {
    let agent: Agent
    let policies: PolicyDirectory
    let version: String

    func handle(_ request: ControlRequest) -> ControlResponse {
        switch request {
        case .list:
            return .success(.guests(agent.snapshot.guests))
        case .dominfo(let name):
            let snapshot = agent.snapshot
            guard let guest = find(name, in: snapshot) else {
                // A name only an untrusted process claims: say who, and why it is ignored.
                if let why = IgnoredProcess.onlyClaimedBy(name, in: snapshot.ignoredProcesses) {
                    return .failure(.unknownGuest, why)
                }
                return unknownGuest(name)
            }
            return .success(.guest(guest))
        case .stats:
            return .success(.stats(DaemonStats(agent.snapshot)))
        case .run(let mode):
            agent.setRun(mode)
            return .success(.run(mode))
        case .tune(let changes):
            do {
                // Each value was checked as the request was read; against the knobs in force: whether the advisor is on decides who sets pages_to_scan.
                let tunables = try changes.applied(to: agent.currentTunables)
                try agent.setTunables(tunables)
                return .success(.tunables(tunables))
            } catch let failure as ControlFailure {
                return .failure(failure)
            } catch {
                return .failure(.invalidArgument, "\(error)")
            }
        case .ksmTune(let changes):
            let current = agent.currentKernelKSM
            guard current.enabled else {
                return .failure(
                    .unavailable,
                    "samepaged does not govern ksmd ([kernel_ksm] enabled = false): set enabled = true in its configuration file and reload it (SIGHUP)")
            }
            do {
                switch agent.setKernelKSM(try changes.applied(to: current)) {
                case .success(let status): return .success(.kernelKSM(status))
                case .failure(let refusal): return .failure(.unavailable, refusal.description)
                }
            } catch {
                return .failure(error)
            }
        case .policyShow(let name):
            let snapshot = agent.snapshot
            var guests = snapshot.guests
            if let name {
                guard let guest = find(name, in: snapshot) else { return unknownGuest(name) }
                guests = [guest]
            }
            return .success(.policies(guests.map { guest in
                let (policy, source) = policies.policy(for: guest.identity, vmid: guest.vmid)
                return GuestPolicyInfo(name: guest.name, uuid: guest.uuid, source: source, policy: policy)
            }))
        case .policyReload:
            let errors = policies.reload()
            agent.reloadPolicies()
            return .success(.policyReload(PolicyReloadReport(errors: errors.map(\.description))))
        case .sharing:
            guard let matrix = agent.sharingMatrix() else {
                return .failure(.unavailable, "the agent did not answer in time; try again")
            }
            return .success(.sharing(matrix))
        case .version:
            return .success(.version(VersionInfo(daemon: version)))
        case .advise(let name):
            let snapshot = agent.snapshot
            var guests = snapshot.guests
            if let name {
                guard let guest = find(name, in: snapshot) else { return unknownGuest(name) }
                guests = [guest]
            }
            return .success(.advice(guests.map(GuestAdvice.init)))
        }
    }

    private func find(_ name: String, in snapshot: AgentSnapshot) -> GuestStatus? {
        // A UUID first: a guest may be named after another guest's UUID.
        snapshot.guests.first { $0.uuid == name.lowercased() } ?? snapshot.guests.first { $0.name == name }
    }

    private func unknownGuest(_ name: String) -> ControlResponse {
        .failure(.unknownGuest, "no guest named \(name) (by name or UUID); see 'samepage list'")
    }
}

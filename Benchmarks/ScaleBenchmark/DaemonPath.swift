// What the daemon does with a converged engine besides scanning: the snapshot it publishes
// every 250 ms, the `list` and `sharing` responses of the control socket, and a /metrics
// scrape, through the same model, codec and exporter code.
import BenchmarkSupport
import GuestMemory
import SamepageControl
import SamepageCore
import SamepageMetrics
import SamepageModel

/// One guest as the daemon's worker holds it: identity, regions and engine slots.
struct BenchGuest {
    var identity: GuestIdentity
    var region: GuestRegion
    var slots: [SlotID]
}

/// Costs in seconds (the median of several runs) and sizes in bytes.
struct DaemonPathCosts: Codable {
    var snapshot = 0.0
    var list = 0.0, listBytes = 0
    var sharingMatrix = 0.0, sharingEncode = 0.0, sharingBytes = 0
    var firstScrape = 0.0, scrape = 0.0, scrapeBytes = 0
}

/// The median wall time of `runs` calls of `body` (one thread, so wall time is its CPU time).
func median(_ runs: Int, _ body: () -> Void) -> Double {
    var times: [Double] = []
    for _ in 0..<runs {
        let start = wallSeconds()
        body()
        times.append(wallSeconds() - start)
    }
    return times.sorted()[times.count / 2]
}

/// The snapshot as the worker's `publish()` builds it (Worker+Snapshot.swift): per guest its
/// counters summed over its slots and its regions, guests sorted by name, the engine's
/// globals. Facts and reclaim state are those of a guest nothing is known about.
func snapshot(of guests: [BenchGuest], engine: Engine) -> AgentSnapshot {
    var snapshot = AgentSnapshot()
    snapshot.connected = true
    snapshot.counters = engine.counters
    snapshot.tunables = engine.tunables
    snapshot.run = engine.run
    snapshot.trackingBytes = engine.trackingBytes
    snapshot.updatedOnce = true
    snapshot.guests = guests.sorted { $0.identity.name < $1.identity.name }.map { guest in
        let region = guest.region
        let regions = [RegionStatus(backend: region.backendID, kind: region.kind.description, path: region.path,
                                    bytes: region.size, pages: region.pageCount)]
        return GuestStatus(
            name: guest.identity.name, uuid: guest.identity.uuid, state: "running", mapped: true, mode: .merge,
            trustGroup: "bench", backend: region.kind.description, counters: engine.counters(summing: guest.slots),
            regions: regions)
    }
    for guest in snapshot.guests { snapshot.reclaim.add(guest.reclaim) }
    return snapshot
}

/// Measures the daemon's path over `guests`, each step `runs` times.
func measureDaemonPath(_ guests: [BenchGuest], engine: Engine, runs: Int) -> DaemonPathCosts {
    var costs = DaemonPathCosts()
    var snap = AgentSnapshot()
    costs.snapshot = median(runs) { snap = snapshot(of: guests, engine: engine) }

    var bytes: [UInt8] = []
    costs.list = median(runs) { bytes = ControlCodec.encode(.success(.guests(snap.guests)), id: 1) }
    costs.listBytes = bytes.count

    let byName = guests.sorted { $0.identity.name < $1.identity.name }
    var matrix = SharingMatrix(guests: [], stableNodes: [])
    costs.sharingMatrix = median(runs) {
        matrix = SharingMatrix(guests: byName.map(\.identity), slots: byName.map(\.slots), in: engine)
    }
    costs.sharingEncode = median(runs) { bytes = ControlCodec.encode(.success(.sharing(matrix)), id: 1) }
    costs.sharingBytes = bytes.count
    checkSharing(matrix)

    // The first scrape of an exporter registers every series; later ones find them.
    costs.firstScrape = median(runs) { _ = MetricsExporter(version: "bench").render(snap, process: ProcessMetrics(cpuSeconds: cpuSeconds(), residentBytes: 1 << 30)) }
    let exporter = MetricsExporter(version: "bench")
    _ = exporter.render(snap, process: ProcessMetrics(cpuSeconds: cpuSeconds(), residentBytes: 1 << 30))
    costs.scrape = median(runs) { bytes = exporter.render(snap, process: ProcessMetrics(cpuSeconds: cpuSeconds(), residentBytes: 1 << 30)) }
    costs.scrapeBytes = bytes.count
    return costs
}

/// The matrix is square and symmetric, no cell exceeds its row's diagonal (a node shared by
/// guests i and j has members in i), and guests do share.
func checkSharing(_ matrix: SharingMatrix) {
    let n = matrix.guests.count
    precondition(matrix.stableNodes.count == n && matrix.stableNodes.allSatisfy { $0.count == n }, "sharing matrix not square")
    var across = 0
    for i in 0..<n {
        for j in 0..<n {
            precondition(matrix.stableNodes[i][j] == matrix.stableNodes[j][i], "sharing matrix not symmetric at \(i), \(j)")
            precondition(matrix.stableNodes[i][j] <= matrix.stableNodes[i][i], "guests \(i) and \(j) share more than \(i) has")
            if i != j { across += matrix.stableNodes[i][j] }
        }
    }
    precondition(n < 2 || across > 0, "no two guests share anything")
}

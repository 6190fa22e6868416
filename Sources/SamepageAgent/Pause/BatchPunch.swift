import GuestMemory
import SamepageModel

/// The pages of one pause, region by region, over the guest's opened backends.
///
/// The regions are held by the pause, so a guest that leaves mid-pause keeps its descriptors
/// open until the pause has ended (a few milliseconds), never longer.
struct BatchPunch: PausePunch {
    var regions: [(index: Int, region: GuestRegion, pages: [Int])]

    func punch(while shouldContinue: () -> Bool) -> PunchResult {
        var result = PunchResult()
        for (index, region, pages) in regions {
            guard shouldContinue() else { break }
            do {
                let done = try region.reclaimZeroPages(pages, while: shouldContinue)
                result.punched[index, default: []] += done.punched
                result.outcome.add(done)
            } catch {
                result.failure = "reclaim in \(region.backendID) stopped: \(error)"
                break
            }
        }
        return result
    }
}

/// A pause under way on a pause thread, as the agent's thread keeps it until it ends.
struct PauseInFlight {
    var identity: GuestIdentity
    /// The tracked guest it was started for: a guest mapped again since (new regions) is
    /// another object, and the pause's ranges are not its.
    var tracked: ObjectIdentifier
    var transport: any PauseTransport
    /// The pages it took: put back if the guest's peer was busy.
    var batch: [(region: Int, pages: [Int])]
    var call: BlockingCall<PauseOutcome, Never>
}

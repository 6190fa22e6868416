import Foundation
import Libvirt
@testable import SamepageAgent
import SamepageCore
import SamepageModel
import Testing

/// Each reason a guest's zero pages may not be reclaimed, over a guest built by hand: a
/// running libvirt guest with policy `zero`, given one engine slot so that it counts as
/// mapped (no backend is opened), then changed one fact at a time.
@Suite("Reclaim eligibility") struct ReclaimEligibilityTests {
    static func eligibleGuest() -> TrackedGuest {
        let guest = TrackedGuest(DomainInfo(
            name: "web", uuid: UUID(uuidString: "6f1c0d3e-2a4b-4c5d-8e9f-0a1b2c3d4e5f")!, id: 7, state: .running, pausedReason: nil))
        guest.policy = GuestPolicy(mode: .zero)
        guest.slots = [SlotID(rawValue: 1)]
        return guest
    }

    static func refusal(_ change: (TrackedGuest) -> Void, reclaimEnabled: Bool = true, unendedPause: String? = nil) -> String? {
        let guest = eligibleGuest()
        change(guest)
        return ReclaimEligibility.refusal(of: guest, reclaimEnabled: reclaimEnabled, unendedPause: unendedPause)
    }

    @Test func aMappedRunningGuestWithPolicyZeroIsEligible() {
        #expect(Self.refusal { _ in } == nil)
        #expect(Self.refusal { $0.policy.mode = .merge } == nil)
    }

    @Test func eachReasonSaysWhy() {
        #expect(Self.refusal({ _ in }, reclaimEnabled: false) == "reclaim is disabled (no pause journal)")
        #expect(Self.refusal { $0.policy.mode = .report } == "policy mode report never changes the guest")
        #expect(Self.refusal { $0.policy.mode = .off } == "policy mode off never changes the guest")
        #expect(Self.refusal { $0.slots = [] } == "not mapped")
        #expect(Self.refusal { $0.facts.assignedDevices = ["hostdev0", "hostdev1"] }
            == "assigned devices keep writing while paused: hostdev0, hostdev1")
        #expect(Self.refusal { $0.facts.ivshmem = ["shmem0"] } == "ivshmem devices: shmem0")
        #expect(Self.refusal { $0.facts.persistentMemory = ["nvdimm0"] } == "persistent memory devices: nvdimm0")
        #expect(Self.refusal { $0.facts.launchSecurity = "sev" } == "launch security (sev)")
        #expect(Self.refusal { $0.facts.preallocated = true } == "preallocated memory")
        #expect(Self.refusal { $0.facts.locked = true } == "locked memory")
        #expect(Self.refusal { $0.facts.activeJob = true } == "a job (migration, snapshot, dump) is running")
        #expect(Self.refusal { $0.facts.dmaDescriptors = ["/dev/vfio/12 (qemu 42)"] }
            == "devices that DMA into guest RAM: /dev/vfio/12 (qemu 42)")
        #expect(Self.refusal { $0.facts.definitionUnknown = true } == "its domain XML could not be read again at the last reconcile")
        #expect(Self.refusal { $0.facts.qmpUnreachable = "no QMP monitor on its command line" }
            == "it cannot be paused: no QMP monitor on its command line")
        #expect(Self.refusal { $0.facts.proxmoxLock = "backup" } == "Proxmox VE lock: backup (an operation of Proxmox's is under way)")
        #expect(Self.refusal { $0.facts.otherMappers = [MapperProcess(pid: 4242, command: "dd")] }
            == "RAM mapped by other processes: dd (4242)")
        #expect(Self.refusal { $0.policy.maxPauseMsPerMinute = 0 } == "max_pause_ms_per_minute is 0")
        #expect(Self.refusal { $0.state = .paused } == "not running (paused)")
    }

    @Test func aPauseOfOursNotEndedKeepsReclaimOff() {
        // From the retry list (this run's or an earlier one's), or from the guest's status.
        #expect(Self.refusal({ _ in }, unendedPause: "resume failed: timed out")
            == "a pause of ours has not ended yet (resume failed: timed out)")
        #expect(Self.refusal { $0.reclaimState.setResumeFailure("resume did not return within 2.0 seconds") }
            == "a pause of ours has not ended yet (resume did not return within 2.0 seconds)")
    }

    @Test func theFirstReasonInOrderIsGiven() {
        // Both off and paused: the mode comes first.
        #expect(Self.refusal {
            $0.policy.mode = .report
            $0.state = .paused
        } == "policy mode report never changes the guest")
        // Both a job and a Proxmox lock: the job comes first.
        #expect(Self.refusal {
            $0.facts.activeJob = true
            $0.facts.proxmoxLock = "migrate"
        } == "a job (migration, snapshot, dump) is running")
    }

    /// What `advise` asks: would the guest be eligible in mode zero or merge?
    @Test func asIfReclaimingPassesOverTheModeOnly() {
        func asIf(_ change: (TrackedGuest) -> Void) -> String? {
            let guest = Self.eligibleGuest()
            change(guest)
            return ReclaimEligibility.refusal(of: guest, reclaimEnabled: true, unendedPause: nil, asIfReclaiming: true)
        }
        #expect(asIf { $0.policy.mode = .report } == nil)
        #expect(asIf { $0.policy.mode = .off } == nil)
        #expect(asIf { $0.policy.mode = .report; $0.facts.locked = true } == "locked memory")
        // Off: not mapped because of the mode, so that is no reason; its hugepages are
        // judged from its definition.
        #expect(asIf { $0.policy.mode = .off; $0.slots = [] } == nil)
        #expect(asIf { $0.policy.mode = .off; $0.slots = []; $0.facts.hugepages = true }
            == "hugetlbfs backend (a refault against an empty pool kills QEMU; set reclaim_hugetlbfs to allow)")
        // Report, and mapping failed: that is a reason.
        #expect(asIf { $0.policy.mode = .report; $0.slots = [] } == "not mapped")
    }
}

import Testing
@testable import Libvirt

@Suite struct DomainEventTests {
    @Test(arguments: [
        (2, 0, DomainEvent.started), (2, 1, .started), (2, 2, .started), (2, 4, .resumed),
        (3, 0, .suspended), (3, 1, .suspended), (7, 0, .suspended), (4, 0, .resumed),
        (5, 0, .stopped(.shutdown)), (5, 1, .stopped(.destroyed)), (5, 2, .stopped(.crashed)),
        (5, 3, .migratedAway), (5, 4, .stopped(.saved)), (5, 5, .stopped(.failed)),
        (5, 6, .stopped(.fromSnapshot)), (5, 42, .stopped(.other(42))), (8, 0, .crashed),
    ] as [(Int32, Int32, DomainEvent)])
    func lifecycle(event: Int32, detail: Int32, expected: DomainEvent) {
        #expect(DomainEvent(lifecycleEvent: event, detail: detail) == expected)
    }

    @Test func ignoredLifecycleEvents() {
        // Defined, undefined, guest shutdown in progress.
        for event: Int32 in [0, 1, 6, 99] {
            #expect(DomainEvent(lifecycleEvent: event, detail: 0) == nil)
        }
    }

    @Test func states() {
        #expect(DomainState(rawValue: 1) == .running)
        #expect(DomainState(rawValue: 3) == .paused)
        #expect(DomainState(rawValue: 5) == .shutoff)
        #expect(DomainState(rawValue: 6) == .crashed)
        #expect(DomainState(rawValue: 77) == .unknown(77))
        #expect(PausedReason(rawValue: 1) == .user)
        #expect(PausedReason(rawValue: 2) == .migration)
        #expect(PausedReason(rawValue: 14) == .apiError)
        #expect(PausedReason(rawValue: 15) == .other(15))
    }
}

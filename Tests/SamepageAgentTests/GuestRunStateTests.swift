import Foundation
import Libvirt
import QMP
@testable import SamepageAgent
import Testing

/// libvirt's and QMP's words turned into the agent's, each state by hand: `list`, `--json`
/// and the end-to-end tests show ``GuestRunState/description``, which must stay what libvirt's
/// `DomainState` printed.
@Suite("The agent's run states and monitor events, from libvirt's and QMP's")
struct GuestRunStateTests {
    @Test("Each libvirt domain state: the agent's state, printed as libvirt's was")
    func fromLibvirt() {
        let expected: [(DomainState, GuestRunState, String)] = [
            (.noState, .noState, "no state"),
            (.running, .running, "running"),
            (.blocked, .blocked, "blocked"),
            (.paused, .paused, "paused"),
            (.shuttingDown, .shuttingDown, "shutting down"),
            (.shutoff, .shutOff, "shut off"),
            (.crashed, .crashed, "crashed"),
            (.pmSuspended, .pmSuspended, "pmsuspended"),
            (.unknown(42), .other("unknown state 42"), "unknown state 42"),
        ]
        for (libvirt, agent, printed) in expected {
            #expect(GuestRunState(libvirt) == agent, "\(libvirt)")
            #expect(GuestRunState(libvirt).description == printed)
            #expect(GuestRunState(libvirt).description == libvirt.description)
        }
    }

    @Test("Each QMP run status: the agent's state, named as libvirt names it")
    func fromQMP() {
        let expected: [(QMPRunStatus, Bool, GuestRunState, String)] = [
            (.running, true, .running, "running"),
            (.paused, false, .paused, "paused"),
            (.prelaunch, false, .paused, "paused"),
            (.inmigrate, false, .paused, "paused"),
            (.postmigrate, false, .paused, "paused"),
            (.finishMigrate, false, .paused, "paused"),
            (.restoreVM, false, .paused, "paused"),
            (.saveVM, false, .paused, "paused"),
            (.suspended, false, .pmSuspended, "pmsuspended"),
            (.watchdog, false, .paused, "paused"),
            (.guestPanicked, false, .crashed, "crashed"),
            (.ioError, false, .paused, "paused"),
            (.shutdown, false, .shutOff, "shut off"),
            (.internalError, false, .crashed, "crashed"),
            (.colo, false, .paused, "paused"),
            (.debug, false, .paused, "paused"),
            (.debug, true, .running, "running"),  // The gdbstub single-steps it: it runs.
            (.other("future"), false, .paused, "paused"),
            (.other("future"), true, .running, "running"),
        ]
        for (status, running, agent, printed) in expected {
            let state = GuestRunState(QMPRunState(running: running, status: status))
            #expect(state == agent, "\(status) running: \(running)")
            #expect(state.description == printed)
        }
    }

    @Test("STOP and RESUME from libvirt's monitor events and from QMP's, with QEMU's timestamps; others dropped")
    func monitorEvents() {
        let uuid = UUID()
        #expect(GuestMonitorEvent(QemuMonitorEvent(uuid: uuid, name: "STOP", timestamp: 1700000000.25))
            == GuestMonitorEvent(uuid: uuid, kind: .stop, timestamp: 1700000000.25))
        #expect(GuestMonitorEvent(QemuMonitorEvent(uuid: uuid, name: "RESUME", timestamp: 1700000000.5))
            == GuestMonitorEvent(uuid: uuid, kind: .resume, timestamp: 1700000000.5))
        #expect(GuestMonitorEvent(QemuMonitorEvent(uuid: uuid, name: "SHUTDOWN", timestamp: 1)) == nil)

        let stop = QMPEvent(name: "STOP", timestamp: QMPTimestamp(seconds: 1700000000, microseconds: 250000))
        #expect(GuestMonitorEvent(stop, of: uuid) == GuestMonitorEvent(uuid: uuid, kind: .stop, timestamp: 1700000000.25))
        let resume = QMPEvent(name: "RESUME", timestamp: QMPTimestamp(seconds: 1700000000, microseconds: 500000))
        #expect(GuestMonitorEvent(resume, of: uuid) == GuestMonitorEvent(uuid: uuid, kind: .resume, timestamp: 1700000000.5))
        #expect(GuestMonitorEvent(QMPEvent(name: "POWERDOWN", timestamp: QMPTimestamp(seconds: 1, microseconds: 0)), of: uuid) == nil)
    }

    @Test("A pause's guest-seen length from the agent's events: the first STOP within it, the first RESUME after")
    func guestSeen() {
        let uuid = UUID()
        let record = PauseRecord(wallStart: 100, wallEnd: 100.5, milliseconds: 500, maxPauseMs: 1000, audit: "", until: .now)
        let events = [
            GuestMonitorEvent(uuid: uuid, kind: .stop, timestamp: 90),  // An older pause.
            GuestMonitorEvent(uuid: uuid, kind: .resume, timestamp: 91),
            GuestMonitorEvent(uuid: uuid, kind: .stop, timestamp: 100.1),
            GuestMonitorEvent(uuid: uuid, kind: .resume, timestamp: 100.4),
        ]
        let seen = record.guestSeenMilliseconds(among: events)
        #expect(seen.map { abs($0 - 300) < 1e-6 } == true)
        #expect(record.guestSeenMilliseconds(among: Array(events.prefix(3))) == nil)
    }
}

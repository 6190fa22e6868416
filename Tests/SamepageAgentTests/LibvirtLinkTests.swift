import Foundation
@testable import SamepageAgent
import Testing

/// The libvirt link's backoff, against libvirt's in-process test driver with a definition
/// file that is not there: every attempt fails at once, with no daemon.
@Suite("The libvirt link") struct LibvirtLinkTests {
    @Test func failedConnectsBackOffDoublingUpToTheMaximum() {
        var configuration = AgentConfiguration()
        configuration.uri = "test:///nonexistent/samepage-link-test.xml"
        configuration.maximumReconnectDelay = .seconds(2)
        let link = LibvirtLink(agent: Agent(configuration: configuration))
        let t0 = ContinuousClock.now
        #expect(link.connectIsDue(at: t0))
        // 500 ms, then 1 s, then 2 s, then the 2 s maximum.
        let waits: [Duration] = [.milliseconds(500), .seconds(1), .seconds(2), .seconds(2)]
        for wait in waits {
            #expect(!link.connect(at: t0))
            #expect(link.nextAttempt == t0 + wait)
            #expect(!link.connectIsDue(at: t0 + wait - .milliseconds(1)))
            #expect(link.connectIsDue(at: t0 + wait))
        }
        #expect(link.connection == nil)
        #expect(link.error?.hasPrefix("cannot connect to libvirt at test:///nonexistent/samepage-link-test.xml: ") == true)
        // Nothing to drop: no publish asked for.
        #expect(!link.disconnect(reason: "test"))
    }

    /// `libvirt.uri = ""` (a Proxmox VE host): never an attempt, never an error to report.
    @Test func anEmptyURIIsLibvirtOff() {
        var configuration = AgentConfiguration()
        configuration.uri = ""
        let link = LibvirtLink(agent: Agent(configuration: configuration))
        #expect(!link.isConfigured)
        let t0 = ContinuousClock.now
        #expect(!link.connectIsDue(at: t0))
        #expect(!link.connectIsDue(at: t0 + .seconds(3600)))
        #expect(link.error == nil)
    }

    @Test func aConnectionResetsTheBackoff() throws {
        var configuration = AgentConfiguration()
        configuration.uri = "test:///default"
        let link = LibvirtLink(agent: Agent(configuration: configuration))
        #expect(link.connect())
        #expect(link.error == nil)
        #expect(link.reconnectDelay == .milliseconds(500))
        let t0 = ContinuousClock.now
        #expect(link.disconnect(reason: "libvirtd closed the connection", at: t0))
        #expect(link.connection == nil)
        #expect(link.error == "libvirtd closed the connection")
        #expect(link.nextAttempt == t0 + .milliseconds(500))
    }
}

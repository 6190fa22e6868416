import Foundation
import Libvirt
import Logging

/// The agent's connection to libvirtd: the connection, its lifecycle-event and QEMU-monitor
/// event subscriptions (delivered to the ``Agent``), why it is down, and the backoff of the
/// attempts to connect again (500 ms, doubled at each failure up to
/// ``AgentConfiguration/maximumReconnectDelay``).
///
/// Its own room: the subscriptions, the error and the backoff are read by nothing else, and
/// ending the connection ends its subscriptions with it (``close()``). A class, since its
/// connection is lent to the pauses and the kernel-KSM control while it lasts.
final class LibvirtLink {
    let agent: Agent
    var logger: Logger { agent.logger }
    var uri: String { agent.configuration.uri }

    private(set) var connection: LibvirtConnection?
    private var subscription: EventSubscription?
    /// QEMU's STOP and RESUME events: what the guest saw of a pause. Optional: without them
    /// pauses are measured from the calls only.
    private var monitorSubscription: QemuMonitorSubscription?
    /// Why there is no connection, nil while connected (and before the first attempt).
    private(set) var error: String?
    /// The wait after the next failure.
    private(set) var reconnectDelay: Duration = .milliseconds(500)
    /// No attempt before this.
    private(set) var nextAttempt = ContinuousClock.now

    init(agent: Agent) {
        self.agent = agent
    }

    /// Whether an attempt to connect is due at `now` (no connection, and the backoff is over).
    func connectIsDue(at now: ContinuousClock.Instant) -> Bool { isConfigured && connection == nil && now >= nextAttempt }

    /// Whether libvirt is on (`libvirt.uri` not empty): off, no connection is ever attempted.
    var isConfigured: Bool { !uri.isEmpty }

    /// Connects and subscribes to the events, or, failing, says why once (the same error is
    /// not logged again) and waits longer before the next attempt.
    ///
    /// - Returns: Whether it connected.
    @discardableResult
    func connect(at now: ContinuousClock.Instant = .now) -> Bool {
        do {
            let connection = try LibvirtConnection(uri: uri)
            let agent = self.agent
            subscription = try connection.observeEvents({ agent.deliver($0) }, onClose: { _ in agent.connectionDidClose() })
            do {
                monitorSubscription = try connection.observeQemuMonitorEvents(["STOP", "RESUME"]) { event in
                    if let event = GuestMonitorEvent(event) { agent.deliver(event) }
                }
            } catch {
                logger.warning("no QEMU monitor events (\(error)): pauses are measured from the libvirt calls only")
            }
            self.connection = connection
            if error != nil { logger.notice("reconnected to libvirt at \(uri)") }
            error = nil
            reconnectDelay = .milliseconds(500)
            return true
        } catch {
            let message = "cannot connect to libvirt at \(uri): \(error)"
            if self.error != message { logger.error("\(message); retrying with backoff") }
            self.error = message
            nextAttempt = now + reconnectDelay
            reconnectDelay = min(reconnectDelay * 2, agent.configuration.maximumReconnectDelay)
            return false
        }
    }

    /// Drops a connection that was lost (`reason`); the next attempt comes after the
    /// current backoff. Guests stay mapped while their QEMU runs.
    ///
    /// - Returns: Whether there was a connection to drop.
    @discardableResult
    func disconnect(reason: String, at now: ContinuousClock.Instant = .now) -> Bool {
        guard connection != nil else { return false }
        logger.error("lost libvirt connection: \(reason); guests stay mapped while their QEMU runs")
        close()
        error = reason
        nextAttempt = now + reconnectDelay
        return true
    }

    /// Ends the subscriptions, then the connection (at stop).
    func close() {
        subscription = nil
        monitorSubscription = nil
        connection = nil
    }
}

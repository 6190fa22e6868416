import ServiceLifecycle

/// The agent as a swift-service-lifecycle `Service`: ``run()`` is its life. It starts the
/// agent's thread, and on graceful shutdown (or cancellation) asks it to stop, which ends its
/// pauses and releases every guest's mappings; it returns when the thread has ended, without
/// blocking a thread of the cooperative pool. An agent that ends on its own throws
/// ``AgentStopped``: the service group, and with it the daemon, stops too.
extension Agent: Service {
    public func run() async throws {
        start()
        let exit = await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await exited()
            } onGracefulShutdown: {
                self.requestStop()
            }
        } onCancel: {
            self.requestStop()
        }
        if case .failed(let why) = exit { throw AgentStopped(reason: why) }
    }
}

/// The agent's thread ended without being asked to.
public struct AgentStopped: Error, CustomStringConvertible {
    public var reason: String
    public var description: String { "the agent stopped: \(reason)" }
}

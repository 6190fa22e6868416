import Foundation
import Dispatch
import Libvirt
import Synchronization

/// A call that may still be under way after its caller stopped waiting.
protocol PendingCall: AnyObject, Sendable {
    var isFinished: Bool { get }
}

/// A blocking libvirt call run on a thread of its own (never Swift's cooperative pool) and waited for at most a timeout. libvirt has no per-call timeout, and a call can
/// wait for the domain's job lock (held by someone's migration, say) or on a hung libvirtd;
/// a call not back in time keeps running and is known by ``isFinished``.
final class LibvirtCall<Value: Sendable>: PendingCall {
    private final class State: Sendable {
        let outcome = Mutex<Result<Value, LibvirtError>?>(nil)
        let done = DispatchSemaphore(value: 0)
    }
    private let state = State()

    init(_ body: @escaping @Sendable () throws(LibvirtError) -> Value) {
        // A thread of its own, not Dispatch's global queues: on Linux those are the threads
        // Swift's cooperative pool runs on too, and a call that never returns would hold one.
        let thread = Thread { [state] in
            let result: Result<Value, LibvirtError>
            do throws(LibvirtError) { result = .success(try body()) } catch { result = .failure(error) }
            state.outcome.withLock { $0 = result }
            state.done.signal()
        }
        thread.name = "samepage-libvirt-call"
        thread.start()
    }

    var isFinished: Bool { state.outcome.withLock { $0 != nil } }

    /// The call's result, or nil if it did not return within `timeout`.
    func wait(_ timeout: Duration) -> Result<Value, LibvirtError>? {
        guard state.done.wait(timeout: .now() + timeout.inSeconds) == .success else { return nil }
        state.done.signal()  // Later waits return at once too.
        return state.outcome.withLock { $0 }
    }
}

import Foundation
import Synchronization
import Dispatch

/// Threads for blocking calls (libvirt, QMP, pauses), started as needed and reused.
///
/// Not Dispatch's global queues: on Linux those are the threads Swift's cooperative pool runs
/// on too, and a call that never returns would hold one of its two. Not a fixed pool either: a
/// hung libvirtd or QEMU holds the thread of its call, and the calls of other guests must not
/// queue behind it. So a job goes to an idle thread when there is one, and to a new thread
/// when there is none; a thread idle for ``idleLifetime`` ends, but for ``keptIdle``.
/// Callers bound how many calls they leave outstanding (one pause, one resume per guest).
final class BlockingThreads: @unchecked Sendable {
    /// The threads of every blocking call of the agent.
    static let shared = BlockingThreads(name: "samepage-blocking")

    /// How long an idle thread waits for work before it ends.
    static let idleLifetime: TimeInterval = 30
    /// Idle threads kept whatever their idle time.
    static let keptIdle = 2

    private let name: String
    // Guards everything below.
    private let condition = NSCondition()
    private var queue: [@Sendable () -> Void] = []
    private var idle = 0
    private var threads = 0

    init(name: String) { self.name = name }

    /// Runs `job` on an idle thread, or on a new one when every thread is busy.
    func run(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        queue.append(job)
        if queue.count > idle {
            threads += 1
            let thread = Thread { [self] in work() }
            thread.name = name
            thread.start()
        } else {
            condition.signal()
        }
        condition.unlock()
    }

    /// Threads started and not ended, busy or idle.
    var threadCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return threads
    }

    private func work() {
        condition.lock()
        while true {
            if !queue.isEmpty {
                let job = queue.removeFirst()
                condition.unlock()
                job()
                condition.lock()
                continue
            }
            idle += 1
            let signalled = condition.wait(until: Date(timeIntervalSinceNow: Self.idleLifetime))
            idle -= 1
            if !signalled && queue.isEmpty && threads > Self.keptIdle {
                threads -= 1
                condition.unlock()
                return
            }
        }
    }
}

/// A call that may still be under way after its caller stopped waiting.
protocol PendingCall: AnyObject, Sendable {
    var isFinished: Bool { get }
}

/// A blocking call run on ``BlockingThreads`` and waited for at most a timeout; a call not back
/// in time keeps running and is known by ``isFinished``.
final class BlockingCall<Value: Sendable, Failure: Error>: PendingCall {
    private final class State: Sendable {
        let outcome = Mutex<Result<Value, Failure>?>(nil)
        let done = DispatchSemaphore(value: 0)
    }
    private let state = State()

    init(on threads: BlockingThreads = .shared, _ body: @escaping @Sendable () throws(Failure) -> Value) {
        threads.run { [state] in
            let result: Result<Value, Failure>
            do throws(Failure) { result = .success(try body()) } catch { result = .failure(error) }
            state.outcome.withLock { $0 = result }
            state.done.signal()
        }
    }

    var isFinished: Bool { state.outcome.withLock { $0 != nil } }

    /// The call's result, or nil if it did not return within `timeout`.
    func wait(_ timeout: Duration) -> Result<Value, Failure>? {
        guard state.done.wait(timeout: .now() + max(0, timeout.inSeconds)) == .success else { return nil }
        state.done.signal()  // Later waits return at once too.
        return state.outcome.withLock { $0 }
    }

    /// The call's result if it has returned; never waits.
    var result: Result<Value, Failure>? { state.outcome.withLock { $0 } }
}

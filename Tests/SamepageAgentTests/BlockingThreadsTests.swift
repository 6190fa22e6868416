import Dispatch
import Foundation
import Synchronization
import Testing

@testable import SamepageAgent

@Suite("Blocking threads and calls")
struct BlockingThreadsTests {
    @Test("Calls one after another reuse one thread")
    func reuse() {
        let threads = BlockingThreads(name: "test-reuse")
        for value in 0..<5 {
            let call = BlockingCall(on: threads) { () throws(Never) in value * 2 }
            #expect(call.wait(.seconds(5)).map { try? $0.get() } == value * 2)
            // The caller hears the result before the thread is back waiting for work.
            Thread.sleep(forTimeInterval: 0.02)
        }
        #expect(threads.threadCount == 1)
    }

    @Test("A call that hangs holds its own thread, not the next call")
    func hungCallDoesNotBlockOthers() {
        let threads = BlockingThreads(name: "test-hang")
        let release = DispatchSemaphore(value: 0)
        let hung = BlockingCall(on: threads) { () throws(Never) in release.wait() }
        let next = BlockingCall(on: threads) { () throws(Never) in 42 }
        #expect(next.wait(.seconds(5)).map { try? $0.get() } == 42)
        #expect(hung.wait(.milliseconds(50)) == nil)
        #expect(!hung.isFinished)
        release.signal()
        #expect(hung.wait(.seconds(5)) != nil)
        #expect(threads.threadCount == 2)
    }

    @Test("A call not back in time keeps running and is known to have finished later")
    func lateCall() {
        let threads = BlockingThreads(name: "test-late")
        let call = BlockingCall(on: threads) { () throws(Never) in Thread.sleep(forTimeInterval: 0.2); return "done" }
        #expect(call.wait(.milliseconds(10)) == nil)
        #expect(call.result == nil)
        #expect(call.wait(.seconds(5)).map { try? $0.get() } == "done")
        #expect(call.isFinished)
    }

    @Test("Resume retries back off 100 ms, doubled, at most 5 s: after 1, 5 and 50 failures")
    func retryBackoff() {
        var backoff = RetryBackoff()
        #expect(backoff.next() == .milliseconds(100))
        for _ in 2...4 { _ = backoff.next() }
        #expect(backoff.next() == .milliseconds(1600))  // the 5th: 100 × 2^4
        for _ in 6...49 { _ = backoff.next() }
        #expect(backoff.next() == .seconds(5))  // the 50th, at the cap
        #expect(backoff.failures == 50)
    }
}

// A stand-in "guest" for the reclaim stress test: a multi-threaded process that keeps
// flipping pages of a shared memfd between zero and non-zero, remembers what it wrote, and
// checks it reads back what it wrote. A page punched while it held data reads back as zeroes:
// a lost write.
//
//   samepage-stress-writer PAGES THREADS
//
// Prints "READY <address hex> <bytes>" once the memfd is mapped and filled; runs until it
// gets SIGUSR1; then checks every page and prints "RESULT writes=N checks=N lost=N".
import Glibc
import CLinux
import Foundation
import Synchronization

let pageSize = 4096
let pages = Int(CommandLine.arguments[1])!
let threadCount = Int(CommandLine.arguments[2])!

let fd = samepage_memfd_create("stress-writer", 1 /* MFD_CLOEXEC */)
precondition(fd >= 0 && ftruncate(fd, off_t(pages * pageSize)) == 0)
/// The shared mapping, handed to the writer threads.
struct Memory: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
}
let memory = Memory(base: mmap(nil, pages * pageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)!)
precondition(memory.base != MAP_FAILED)
let base = memory.base

/// Stamps a page with a non-zero value in its first and last word (zeroes it for 0).
nonisolated func stamp(_ base: UnsafeMutableRawPointer, _ page: Int, _ value: UInt64) {
    let words = (base + page * pageSize).assumingMemoryBound(to: UInt64.self)
    if value == 0 {
        memset(base + page * pageSize, 0, pageSize)
    } else {
        words[0] = value
        words[pageSize / 8 - 1] = value
    }
}

nonisolated func holds(_ base: UnsafeMutableRawPointer, _ page: Int, _ value: UInt64) -> Bool {
    let words = (base + page * pageSize).assumingMemoryBound(to: UInt64.self)
    return words[0] == value && words[pageSize / 8 - 1] == value
}

let writes = Atomic<Int>(0)
let checks = Atomic<Int>(0)
let lost = Atomic<Int>(0)
let stopping = Atomic<Bool>(false)

// Thread t owns the pages p with p % threadCount == t; half start as data, half as zero.
var expectedByThread: [[UInt64]] = (0..<threadCount).map { t in
    stride(from: t, to: pages, by: threadCount).map { p in p % 2 == 0 ? UInt64(p + 1) : 0 }
}
for t in 0..<threadCount {
    for (i, p) in stride(from: t, to: pages, by: threadCount).enumerated() { stamp(base, p, expectedByThread[t][i]) }
}
print("READY \(String(UInt(bitPattern: base), radix: 16)) \(pages * pageSize)")
fflush(nil)

// SIGUSR1 ends the run: blocked in every thread, taken by the main thread with sigwait.
var stopSignal = sigset_t()
sigemptyset(&stopSignal)
sigaddset(&stopSignal, SIGUSR1)
pthread_sigmask(SIG_BLOCK, &stopSignal, nil)

let finished = DispatchGroup()
let results = Mutex<[[UInt64]]>(expectedByThread)
for t in 0..<threadCount {
    finished.enter()
    let start = expectedByThread[t]
    let owned = Array(stride(from: t, to: pages, by: threadCount))
    Thread { [memory] in
        let base = memory.base
        var expected = start
        var rng = SystemRandomNumberGenerator()
        var counter = UInt64(t) << 48 | 1
        while !stopping.load(ordering: .relaxed) {
            let i = Int.random(in: 0..<owned.count, using: &rng)
            // Check what is there, then write the other kind of content.
            if !holds(base, owned[i], expected[i]) { lost.add(1, ordering: .relaxed) }
            checks.add(1, ordering: .relaxed)
            counter += 1
            let value: UInt64 = Bool.random(using: &rng) ? 0 : counter
            stamp(base, owned[i], value)
            expected[i] = value
            writes.add(1, ordering: .relaxed)
        }
        results.withLock { $0[t] = expected }
        finished.leave()
    }.start()
}
expectedByThread = []

var received: Int32 = 0
sigwait(&stopSignal, &received)
stopping.store(true, ordering: .relaxed)
finished.wait()
let expected = results.withLock { $0 }
for t in 0..<threadCount {
    for (i, p) in stride(from: t, to: pages, by: threadCount).enumerated() {
        if !holds(base, p, expected[t][i]) { lost.add(1, ordering: .relaxed) }
        checks.add(1, ordering: .relaxed)
    }
}
print("RESULT writes=\(writes.load(ordering: .relaxed)) checks=\(checks.load(ordering: .relaxed)) lost=\(lost.load(ordering: .relaxed))")

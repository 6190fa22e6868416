import Glibc

/// The CPU time the calling thread has used so far, user and system together: what the
/// scheduler charged to this thread alone, not to its process (ksmd's `task_sched_runtime`,
/// seen from user space). Time spent blocked or asleep does not count.
///
/// The corresponding C call is `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`. It fails only for
/// an invalid clock or address, which cannot happen here; the failure is still thrown, with
/// its errno, rather than trapped.
public func threadCPUTime() throws(SystemError) -> Duration {
    var now = timespec()
    guard clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now) == 0 else {
        throw SystemError("clock_gettime(CLOCK_THREAD_CPUTIME_ID)")
    }
    return .seconds(now.tv_sec) + .nanoseconds(now.tv_nsec)
}

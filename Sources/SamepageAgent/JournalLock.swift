import Foundation
import Glibc
import LinuxSystem
import SystemPackage

/// One journal, one owner: an exclusive hold on a pause journal across processes, for as long
/// as a samepaged (or `samepaged --resume-paused`) works with it.
///
/// The journal's in-process mutex keeps one process's writers apart; this keeps processes
/// apart. Without it, a `samepaged --resume-paused` run by hand, or a second daemon configured
/// with the same journal, would read a pause that is live in the first and resume it under its
/// feet. The hold is `flock(LOCK_EX)` on `JOURNAL.lock`, which the kernel releases when the
/// holder exits however it ends (so a crashed daemon never blocks the service manager's
/// `--resume-paused`), and the hold ends when this owner goes (its descriptor closes). The
/// file holds the holder's pid, for the message.
public final class JournalLock: Sendable {
    private let file: OwnedDescriptor
    /// The lock file.
    public let path: String

    private init(file: consuming OwnedDescriptor, path: String) {
        self.file = file
        self.path = path
    }

    /// Takes the hold on the journal at `journal`, without waiting: throws when another
    /// process holds it (naming it) or the lock file cannot be made.
    ///
    /// The corresponding C calls are `open` and `flock`.
    public static func acquire(journal: String) throws(JournalError) -> JournalLock {
        let path = journal + ".lock"
        try? FileManager.default.createDirectory(atPath: (journal as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let file = try openLockFile(path, journal: journal)
        guard flock(file.descriptor.rawValue, LOCK_EX | LOCK_NB) == 0 else {
            let failure = errno
            if failure == EWOULDBLOCK {
                let holder = (try? file.readToEnd(limit: 32, "read \(path)")).map { String(decoding: $0, as: UTF8.self) }
                    .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
                throw JournalError(
                    path: journal,
                    problem: "is in use by another samepaged\(holder.map { " (pid \($0))" } ?? ""): one journal has one owner; give each daemon its own reclaim.journal")
            }
            throw JournalError(path: journal, operation: "flock \(path)", errno: failure)
        }
        ftruncate(file.descriptor.rawValue, 0)
        let pid = "\(getpid())\n"
        _ = pid.withCString { pwrite(file.descriptor.rawValue, $0, strlen($0), 0) }
        return JournalLock(file: file, path: path)
    }

    private static func openLockFile(_ path: String, journal: String) throws(JournalError) -> OwnedDescriptor {
        do { return try OwnedDescriptor.open(path, .readWrite, options: [.create], permissions: [.ownerReadWrite]) } catch {
            throw JournalError(path: journal, problem: "cannot be locked: \(error)")
        }
    }
}

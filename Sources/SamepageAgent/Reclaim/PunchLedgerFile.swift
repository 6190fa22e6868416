import Foundation
import LinuxSystem

/// The file a ``PunchLedger`` is kept in, next to the pause journal (`punched.json`):
/// `{"format": 1, "backends": [...]}`.
///
/// It is accounting, not a safety record (what makes a pause end is the journal): it is
/// replaced atomically without fsync, at most every few seconds, and a file that cannot be
/// read is set aside (`.unreadable`) with an error that says what is lost, rather than stop
/// the daemon.
struct PunchLedgerFile {
    let path: String

    /// The format written and read.
    static let format = 1
    /// Read no more than this: 64 MiB holds millions of ranges.
    static let sizeLimit = 64 << 20

    /// The ledger's file beside the journal at `journalPath`.
    init(besideJournal journalPath: String) {
        path = (journalPath as NSString).deletingLastPathComponent + "/punched.json"
    }

    init(path: String) { self.path = path }

    private struct File: Codable {
        var format: Int
        var backends: PunchLedger
    }

    /// The ledger in the file; empty when there is none.
    func load() throws(LedgerFileError) -> PunchLedger {
        let bytes: [UInt8]
        do { bytes = try readWholeFile(path, limit: Self.sizeLimit) } catch {
            if error.errno == .noSuchFileOrDirectory { return PunchLedger() }
            throw LedgerFileError(path: path, problem: "cannot be read: \(error)")
        }
        if bytes.isEmpty { return PunchLedger() }
        guard bytes.count < Self.sizeLimit else { throw LedgerFileError(path: path, problem: "is larger than \(Self.sizeLimit >> 20) MiB") }
        let file: File
        do { file = try JSONDecoder().decode(File.self, from: Data(bytes)) } catch {
            throw LedgerFileError(path: path, problem: "is not a punch ledger: \(error)")
        }
        guard file.format == Self.format else {
            throw LedgerFileError(path: path, problem: "has format \(file.format); this samepaged reads format \(Self.format)")
        }
        return file.backends
    }

    /// Replaces the file with `ledger` (a temporary file renamed over it).
    func save(_ ledger: PunchLedger) throws(LedgerFileError) {
        let data: Data
        do { data = try JSONEncoder().encode(File(format: Self.format, backends: ledger)) } catch {
            throw LedgerFileError(path: path, problem: "cannot be encoded: \(error)")
        }
        let temporary = path + ".tmp.\(getpid())"
        do {
            try data.write(to: URL(fileURLWithPath: temporary))
        } catch {
            throw LedgerFileError(path: path, problem: "cannot be written (\(temporary)): \(error.localizedDescription)")
        }
        guard rename(temporary, path) == 0 else {
            let problem = "cannot be replaced: rename: \(String(cString: strerror(errno)))"
            unlink(temporary)
            throw LedgerFileError(path: path, problem: problem)
        }
    }

    /// Moves an unreadable file aside, so that the next save does not destroy what an operator
    /// may want to look at. Returns where it went.
    func setAside() -> String? {
        let aside = path + ".unreadable"
        return rename(path, aside) == 0 ? aside : nil
    }
}

/// A punch ledger's file could not be read or written.
struct LedgerFileError: Error, CustomStringConvertible {
    let path: String
    let problem: String
    var description: String { "\(path) \(problem)" }
}

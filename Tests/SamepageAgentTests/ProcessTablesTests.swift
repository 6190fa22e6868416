import Foundation
import Glibc
@testable import SamepageAgent
import Testing

@Suite("Process tables shared by the mappers and the QEMU scanner")
struct ProcessTablesTests {
    @Test("A table under a second old is handed out again; an older one, or a stricter reader, takes a new one")
    func sharing() {
        let root = "/tmp/samepage-tables-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        mkdir(root, 0o700)
        defer { try? FileManager.default.removeItem(atPath: root) }
        mkdir("\(root)/7", 0o700)
        try! "7 (x) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 70 4096 1 0\n".write(toFile: "\(root)/7/stat", atomically: true, encoding: .utf8)

        let tables = ProcessTables(procRoot: root)
        let t0 = ContinuousClock.now
        let first = tables.table(at: t0)
        #expect(tables.taken == 1)
        #expect(first.statReads == 1)
        // The other reader, in the same iteration: the same table.
        #expect(tables.table(at: t0 + .milliseconds(20)).taken == first.taken)
        #expect(tables.table(at: t0 + .milliseconds(999)).taken == first.taken)
        #expect(tables.taken == 1)
        // A reader that wants it fresher than the table is takes a new one.
        let strict = tables.table(at: t0 + .milliseconds(500), maxAge: .milliseconds(100))
        #expect(tables.taken == 2)
        #expect(strict.taken == t0 + .milliseconds(500))
        // A second after it was taken, the next reader takes a new one.
        #expect(tables.table(at: t0 + .milliseconds(1500)).taken == t0 + .milliseconds(1500))
        #expect(tables.taken == 3)
    }
}

import Foundation
import KernelKSM
import LinuxSystem
import Testing

@Suite("/proc/PID/ksm_stat") struct ProcessKSMStatTests {
    @Test func thisProcesssRealFile() throws {
        // This machine's kernel (6.18) writes every field; the test process merges nothing.
        let stat = try ProcessKSMStat.read(pid: getpid())
        #expect(stat.rmapItems != nil && stat.zeroPages != nil && stat.mergingPages != nil && stat.processProfit != nil)
        #expect(stat.mergeAny == false)
        #expect(stat.mergeable != nil)
        let pages = try ProcessKSMStat.readMergingPages(pid: getpid())
        #expect(pages == stat.mergingPages)
    }

    @Test func everyFieldOfACurrentKernel() {
        let text = """
            ksm_rmap_items 262144
            ksm_zero_pages 1024
            ksm_merging_pages 180000
            ksm_process_profit 720437248
            ksm_merge_any: yes
            ksm_mergeable: yes

            """
        #expect(ProcessKSMStat(parsing: text) == ProcessKSMStat(
            rmapItems: 262_144, zeroPages: 1024, mergingPages: 180_000, processProfit: 720_437_248, mergeAny: true,
            mergeable: true))
    }

    @Test func olderKernelsWriteFewerFields() {
        // 6.1: the rmap items alone.
        #expect(ProcessKSMStat(parsing: "ksm_rmap_items 12\n") == ProcessKSMStat(rmapItems: 12))
        // 6.4: merging pages and profit; a profit is negative while the rmap items cost more.
        #expect(ProcessKSMStat(parsing: "ksm_rmap_items 100\nksm_merging_pages 0\nksm_process_profit -6400\n")
            == ProcessKSMStat(rmapItems: 100, mergingPages: 0, processProfit: -6400))
        // A kernel thread has no memory and an empty file.
        #expect(ProcessKSMStat(parsing: "") == ProcessKSMStat())
    }

    @Test func unknownLinesAreSkipped() {
        let text = "ksm_rmap_items 1\nksm_future_field 9\nksm_future_flag: maybe\nsomething else entirely\nksm_mergeable: no\n"
        #expect(ProcessKSMStat(parsing: text) == ProcessKSMStat(rmapItems: 1, mergeable: false))
    }

    @Test(arguments: [
        "ksm_rmap_items x\n", "ksm_merging_pages 1.5\n", "ksm_process_profit \n ksm_process_profit --1\n",
        "ksm_merge_any: true\n", "ksm_mergeable: 1\n",
    ])
    func aKnownFieldThatCannotBeReadIsAnError(_ text: String) {
        #expect(ProcessKSMStat(parsing: text) == nil)
    }

    @Test func mergingPagesFile() {
        #expect(ProcessKSMStat.mergingPages(parsing: "4096\n") == 4096)
        #expect(ProcessKSMStat.mergingPages(parsing: "0") == 0)
        #expect(ProcessKSMStat.mergingPages(parsing: "") == nil)
        #expect(ProcessKSMStat.mergingPages(parsing: "12 pages\n") == nil)
    }

    @Test func readersUnderAnotherProcRoot() throws {
        let root = NSTemporaryDirectory() + "/samepage-proc-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/42", withIntermediateDirectories: true)
        try Data("ksm_rmap_items 5\nksm_merging_pages 3\n".utf8).write(to: URL(fileURLWithPath: root + "/42/ksm_stat"))
        try Data("3\n".utf8).write(to: URL(fileURLWithPath: root + "/42/ksm_merging_pages"))
        #expect(try ProcessKSMStat.read(pid: 42, procRoot: root) == ProcessKSMStat(rmapItems: 5, mergingPages: 3))
        #expect(try ProcessKSMStat.readMergingPages(pid: 42, procRoot: root) == 3)

        // A process without memory: an empty file is nil, not an error.
        try Data().write(to: URL(fileURLWithPath: root + "/42/ksm_merging_pages"))
        #expect(try ProcessKSMStat.readMergingPages(pid: 42, procRoot: root) == nil)

        try Data("ksm_rmap_items many\n".utf8).write(to: URL(fileURLWithPath: root + "/42/ksm_stat"))
        #expect(throws: SystemError(errno: .invalidArgument, operation: "parse \(root)/42/ksm_stat")) {
            try ProcessKSMStat.read(pid: 42, procRoot: root)
        }
        try Data("lots\n".utf8).write(to: URL(fileURLWithPath: root + "/42/ksm_merging_pages"))
        #expect(throws: SystemError(errno: .invalidArgument, operation: "parse \(root)/42/ksm_merging_pages")) {
            try ProcessKSMStat.readMergingPages(pid: 42, procRoot: root)
        }
        // A process that is gone.
        #expect(throws: SystemError(errno: .noSuchFileOrDirectory, operation: "open \(root)/43/ksm_stat")) {
            try ProcessKSMStat.read(pid: 43, procRoot: root)
        }
    }
}

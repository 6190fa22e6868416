import Foundation
import SamepageCore
import SamepageModel
import Testing

@Suite("Processes ignored as untrusted") struct IgnoredProcessTests {
    private let fake = IgnoredProcess(
        pid: 1234, uid: 65534, executable: "/dev/shm/kvm", reason: "its executable /dev/shm/kvm is owned by uid 65534, not root",
        claimedName: "db1", claimedUUID: "6b1c7e2a-0000-4000-8000-000000000001")

    @Test func listEndsWithOneLinePerIgnoredProcess() {
        #expect(IgnoredProcess.listSection([]) == [])
        let unknownUID = IgnoredProcess(pid: 77, uid: nil, executable: "/opt/kvm", reason: "its owner and executable cannot be checked: EACCES")
        #expect(IgnoredProcess.listSection([fake, unknownUID]) == [
            "",
            "ignored: pid 1234 (uid 65534, /dev/shm/kvm, claims the name db1): its executable /dev/shm/kvm is owned by uid 65534, not root",
            "ignored: pid 77 (uid unknown, /opt/kvm): its owner and executable cannot be checked: EACCES",
        ])
    }

    @Test func dominfoOfANameOnlyAnIgnoredProcessClaimsSaysWhy() {
        #expect(IgnoredProcess.onlyClaimedBy("db1", in: [fake])
            == "no guest named db1; only a process samepaged ignores claims it: pid 1234 (uid 65534, /dev/shm/kvm): its executable /dev/shm/kvm is owned by uid 65534, not root")
        // By its claimed UUID, in any case.
        #expect(IgnoredProcess.onlyClaimedBy("6B1C7E2A-0000-4000-8000-000000000001", in: [fake]) != nil)
        #expect(IgnoredProcess.onlyClaimedBy("db2", in: [fake]) == nil)
        #expect(IgnoredProcess.onlyClaimedBy("db1", in: []) == nil)
    }

    @Test func textFromTheProcessCannotDriveATerminal() {
        let hostile = IgnoredProcess(
            pid: 9, uid: 1000, executable: "/tmp/\u{1b}[2Jkvm", reason: "r", claimedName: "a\u{9b}b\nc" + String(repeating: "x", count: 300))
        #expect(hostile.executable == "/tmp/?[2Jkvm")
        #expect(hostile.claimedName?.hasPrefix("a?b?c") == true)
        #expect(hostile.claimedName?.count == IgnoredProcess.maximumTextLength)
        #expect(hostile.claimedName?.hasSuffix("…") == true)
    }

    @Test func statsCarryThemAndLeaveTheKeyOutWithoutAny() throws {
        var stats = DaemonStats()
        let empty = try JSONSerialization.jsonObject(with: JSONEncoder().encode(stats)) as? [String: Any]
        #expect(empty?["ignored_processes"] == nil)
        stats.ignoredProcesses = [fake]
        let data = try JSONEncoder().encode(stats)
        let object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        let first = (object?["ignored_processes"] as? [[String: Any]])?.first
        #expect(first?["pid"] as? Int == 1234)
        #expect(first?["uid"] as? Int == 65534)
        #expect(first?["claimed_name"] as? String == "db1")
        #expect(try JSONDecoder().decode(DaemonStats.self, from: data).ignoredProcesses == [fake])
    }
}

import Glibc
import Foundation
import Testing

@Suite("End to end: the scan-time advisor", .serialized)
struct AdvisorEndToEndTests {
    @Test("With the advisor on, pages_to_scan follows it and full scans come near the target")
    func fullScansFollowTheTarget() throws {
        let names = ["sp-e2e-adv1", "sp-e2e-adv2"]
        TestHost.removeGuests(names)
        defer { TestHost.removeGuests(names) }
        for name in names { try TestHost.startGuest(name, ram: "memfd") }
        // A 10 s target. Two 256 MiB guests are 131,072 pages: at the starting 500 pages per
        // batch (20 ms apart) a full scan takes about 5 s, so the advisor must slow down.
        let config = daemonConfig
            .replacingOccurrences(of: "advisor_mode = \"none\"\n", with: "")
            .replacingOccurrences(of: "pages_to_scan = 2000\n", with: "")
            .replacingOccurrences(of: "sleep_millisecs = 10\n", with: "sleep_millisecs = 20\nadvisor_mode = \"scan-time\"\nadvisor_target_scan_time = 10\n")
        let daemon = try DaemonProcess(config: config)
        for name in names { try daemon.writePolicy(name, reportPolicy) }
        try daemon.start()
        let start = try daemon.stats()
        #expect(start["advisor_mode"] as? String == "scan-time", "\(start)")
        #expect(int(start["pages_to_scan"]) == 500)

        // A few full scans for the advisor's average to settle, then the next ones are timed.
        #expect(try eventually(timeout: .seconds(120)) { int(try daemon.stats()["full_scans"]) >= 6 }, "\(daemon.log.suffix(2000))")
        let settled = try daemon.stats()
        #expect(int(settled["pages_to_scan"]) < 500, "the advisor did not slow down: \(settled)")
        let scansBefore = int(settled["full_scans"])
        let clock = ContinuousClock()
        let began = clock.now
        #expect(try eventually(timeout: .seconds(120)) { int(try daemon.stats()["full_scans"]) >= scansBefore + 3 })
        let period = (clock.now - began) / Double(int(try daemon.stats()["full_scans"]) - scansBefore)
        // Generous bounds (the figure itself is a benchmark): within a factor of two of 10 s.
        #expect(period > .seconds(5) && period < .seconds(20), "full scans every \(period)")

        // pages_to_scan is the advisor's: setting it by hand is refused while the advisor is on.
        let refused = try daemon.cli("tune", "--pages-to-scan", "3000")
        #expect(refused.status != 0 && refused.output.contains("advisor_mode"), "\(refused.output)")
        let off = try daemon.cli("tune", "--advisor-mode", "none", "--pages-to-scan", "3000")
        #expect(off.status == 0, "\(off.output)")
        #expect(try eventually(timeout: .seconds(10)) { int(try daemon.stats()["pages_to_scan"]) == 3000 })
        #expect(try daemon.stats()["advisor_mode"] as? String == "none")
        #expect(daemon.stop() == 0)
    }
}

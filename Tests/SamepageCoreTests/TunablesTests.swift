import Foundation
import SamepageCore
import Testing

@Suite("Tunables: ranges and the advisor's mode") struct TunablesTests {
    @Test func kernelDefaults() {
        let kernel = Tunables()
        #expect(kernel.pagesToScan == 100)
        #expect(kernel.advisorMode == .off)
        #expect(kernel.advisorTargetScanTime == 200)
        #expect(kernel.advisorMaxCPU == 70)
        #expect(kernel.advisorMinPagesToScan == 500)
        #expect(kernel.advisorMaxPagesToScan == 30_000)
        #expect(AdvisorMode.off.name == "none" && AdvisorMode.scanTime.name == "scan-time")
        #expect(AdvisorMode.off.number == 0 && AdvisorMode.scanTime.number == 1)
    }

    @Test(arguments: [
        (Tunables(advisorTargetScanTime: 0), "advisor_target_scan_time = 0 is out of range: expected at least 1 (seconds)"),
        (Tunables(advisorMaxCPU: 0), "advisor_max_cpu = 0 is out of range: expected 1 to 100 (percent of one core)"),
        (Tunables(advisorMaxCPU: 101), "advisor_max_cpu = 101 is out of range: expected 1 to 100 (percent of one core)"),
        (Tunables(advisorMinPagesToScan: 0), "advisor_min_pages_to_scan = 0 is out of range: expected at least 1"),
        (Tunables(advisorMaxPagesToScan: 499),
         "advisor_max_pages_to_scan = 499 is out of range: expected at least advisor_min_pages_to_scan (500)"),
        (Tunables(pagesToScan: 0), "pages_to_scan = 0 is out of range: expected at least 1"),
    ])
    func outOfRange(tunables: Tunables, message: String) {
        #expect(throws: TunableError.self) { try tunables.validate() }
        do {
            try tunables.validate()
        } catch {
            #expect(error.description == message)
        }
    }

    @Test func boundsThatFit() throws {
        try Tunables(advisorMaxCPU: 1).validate()
        try Tunables(advisorMaxCPU: 100).validate()
        try Tunables(advisorTargetScanTime: 1, advisorMinPagesToScan: 7, advisorMaxPagesToScan: 7).validate()
        // Alone, a maximum is only held to at least 1; against the minimum when both are known.
        try Tunables.checkRange(of: .advisorMaxPagesToScan, 1)
        #expect(throws: TunableError.self) { try Tunables.checkRange(of: .advisorMaxPagesToScan, 0) }
        // The kernel's types bound the knobs it has: max_page_sharing is an int.
        try Tunables.checkRange(of: .maxPageSharing, 2_147_483_647)
        #expect(throws: TunableError(.maxPageSharing, value: 2_147_483_648, expected: "at most 2147483647")) {
            try Tunables.checkRange(of: .maxPageSharing, 2_147_483_648)
        }
    }

    @Test func turningTheAdvisorOnAndOff() {
        var tunables = Tunables(pagesToScan: 1234, advisorMinPagesToScan: 800)
        // On: pages_to_scan restarts from advisor_min_pages_to_scan.
        var changed = tunables.setAdvisorMode(.scanTime, pagesToScanWhenOff: 1000)
        #expect(changed)
        #expect(tunables.advisorMode == .scanTime && tunables.pagesToScan == 800)
        // The same mode again changes nothing, even what the advisor set.
        tunables.pagesToScan = 4321
        changed = tunables.setAdvisorMode(.scanTime, pagesToScanWhenOff: 1000)
        #expect(!changed)
        #expect(tunables.pagesToScan == 4321)
        // Off: the value for by hand.
        changed = tunables.setAdvisorMode(.off, pagesToScanWhenOff: 1000)
        #expect(changed)
        #expect(tunables.advisorMode == .off && tunables.pagesToScan == 1000)
        changed = tunables.setAdvisorMode(.off, pagesToScanWhenOff: 7)
        #expect(!changed)
        #expect(tunables.pagesToScan == 1000)
    }

    @Test func aRequestKeepsTheAdvisorsPagesToScan() {
        let inForce = Tunables(pagesToScan: 2750, sleepMillisecs: 20, advisorMode: .scanTime)
        let requested = Tunables(pagesToScan: 500, sleepMillisecs: 5, advisorMode: .scanTime)
        // The advisor stays on: its 2750 stays; the rest is as asked.
        #expect(inForce.applying(requested) == Tunables(pagesToScan: 2750, sleepMillisecs: 5, advisorMode: .scanTime))
        // Turned off, or on from off: as asked.
        let off = Tunables(pagesToScan: 1000, advisorMode: .off)
        #expect(inForce.applying(off) == off)
        #expect(off.applying(requested) == requested)
    }

    @Test func wireFormWithAndWithoutTheAdvisor() throws {
        let tunables = Tunables(
            pagesToScan: 640, advisorMode: .scanTime, advisorTargetScanTime: 90, advisorMaxCPU: 40,
            advisorMinPagesToScan: 64, advisorMaxPagesToScan: 9999)
        let data = try JSONEncoder().encode(tunables)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["advisor_mode"] as? String == "scan-time")
        #expect(object["advisor_target_scan_time"] as? Int == 90)
        #expect(object["advisor_max_cpu"] as? Int == 40)
        #expect(object["advisor_min_pages_to_scan"] as? Int == 64)
        #expect(object["advisor_max_pages_to_scan"] as? Int == 9999)
        #expect(try JSONDecoder().decode(Tunables.self, from: data) == tunables)

        // A daemon from before the advisor: no advisor keys, so the advisor is off.
        let old = #"{"pages_to_scan":1000,"sleep_millisecs":20,"max_kernel_pages":0,"max_page_sharing":256,"smart_scan":true}"#
        let decoded = try JSONDecoder().decode(Tunables.self, from: Data(old.utf8))
        #expect(decoded == Tunables(pagesToScan: 1000, advisorMode: .off))
        // An unknown mode is an error, not a silent "none".
        let bad = #"{"pages_to_scan":1,"sleep_millisecs":20,"max_kernel_pages":0,"max_page_sharing":256,"smart_scan":true,"advisor_mode":"auto"}"#
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(Tunables.self, from: Data(bad.utf8)) }
    }
}

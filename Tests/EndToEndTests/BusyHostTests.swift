import Glibc
import Foundation
import SamepageAgent
import Testing

@Suite("End to end: a busy host", .serialized)
struct BusyHostEndToEndTests {
    /// samepaged with the default CPU pressure limit, 10% (the shared test configuration turns
    /// deferral off), scanning at a gentler rate than the other tests: a scanner that keeps a
    /// core busy makes CPU pressure of its own on two cores, which would keep reclaim waiting.
    static func daemonWithDefaultPressureLimit() throws -> DaemonProcess {
        try DaemonProcess(config: daemonConfig
            .replacingOccurrences(of: "max_cpu_pressure = 100", with: "max_cpu_pressure = 10")
            .replacingOccurrences(of: "pages_to_scan = 2000\nsleep_millisecs = 10", with: "pages_to_scan = 1000\nsleep_millisecs = 20"))
    }

    @Test("A CPU hog per core makes reclaim wait and say so; once the hogs stop, reclaim goes on and the guest saw each pause")
    func reclaimWaitsForABusyHost() throws {
        let name = "sp-e2e-busy"
        TestHost.removeGuests([name])
        defer { TestHost.removeGuests([name]) }
        try TestHost.startGuest(name, ram: "memfd", fill: 16)

        let daemon = try Self.daemonWithDefaultPressureLimit()
        try daemon.writePolicy(name, "mode = \"zero\"\nmax_pause_ms = 30\nmax_pause_ms_per_minute = 3000\n")
        let hogs = try CPUHogs()
        // Hogs alone make little CPU pressure on an otherwise idle host (measured: 1%); the
        // CPUs' busy share shows them.
        #expect(eventually(timeout: .seconds(30)) { cpuBusyPercent() > 95 }, "the CPUs are not busy: \(cpuBusyPercent())%")
        try daemon.start()

        // The 16 MiB of zero-filled files are confirmed zero (two scans) and wait: reclaim says why.
        func reclaim() throws -> [String: Any] { (try daemon.guest(name)?["reclaim"] as? [String: Any]) ?? [:] }
        func describe() -> String { "\((try? reclaim()) ?? [:])\n\(daemon.log.suffix(3000))" }
        #expect(try eventually(timeout: .seconds(90)) {
            let r = try reclaim()
            return (r["deferred"] as? [String: Any])?["reason"] as? String == "cpu_pressure" && int(r["pending_pages"]) >= 4096
        }, "\(describe())")
        let waiting = try reclaim()
        #expect(int(waiting["deferrals_cpu_pressure"]) >= 1)
        #expect(int(waiting["pauses"]) == 0, "paused under the hogs: \(waiting)")
        let detail = ((waiting["deferred"] as? [String: Any])?["detail"] as? String) ?? ""
        #expect(detail.contains("host CPU pressure") || detail.contains("the CPUs were"), "\(detail)")
        let list = try daemon.cli("list")
        #expect(list.output.contains("\(name): reclaim deferred: "), "\(list.output)")
        #expect(daemon.log.contains("guest \(name): reclaim waits: "))
        // Still waiting ten seconds on: no pause while the host is busy.
        usleep(10_000_000)
        #expect(int(try reclaim()["pauses"]) == 0)

        hogs.stop()
        #expect(try eventually(timeout: .seconds(120)) { int(try daemon.guest(name)?["zero_pages_reclaimed"]) >= 4096 },
                "\(describe())")
        let after = try reclaim()
        #expect(after["deferred"] == nil, "\(after)")
        #expect(daemon.log.contains("guest \(name): reclaim goes on"))

        // What the guest saw of each pause, from QEMU's STOP and RESUME events: every pause is
        // measured so, and lies within our suspend call to the return of our resume call.
        #expect(eventually(timeout: .seconds(10)) {
            let r = (try? reclaim()) ?? [:]
            return int(r["guest_seen_pauses"]) == int(r["pauses"])
        }, "\(describe())")
        let final = try reclaim()
        let pauses = int(final["pauses"])
        let seenTotal = (final["guest_seen_pause_ms_total"] as? NSNumber)?.doubleValue ?? -1
        let callTotal = (final["pause_ms_total"] as? NSNumber)?.doubleValue ?? -1
        #expect(pauses > 0 && seenTotal > 0)
        #expect(seenTotal <= callTotal + Double(pauses) * 0.5, "guest saw \(seenTotal) ms; calls took \(callTotal) ms")
        #expect((final["guest_seen_pause_histogram"] as? [Int])?.reduce(0, +) == int(final["guest_seen_pauses"]))
        #expect(daemon.log.contains("the guest saw"))
        #expect(!daemon.log.contains("what the guest saw is unknown"), "\(daemon.log.suffix(3000))")
        #expect(daemon.stop() == 0)
    }

    @Test("On a host kept about 60% busy in random bursts, reclaim goes on with the default budget and pressure limit")
    func reclaimProgressesUnderBurstyLoad() throws {
        let name = "sp-e2e-bursty"
        TestHost.removeGuests([name])
        defer { TestHost.removeGuests([name]) }
        try TestHost.startGuest(name, ram: "memfd", fill: 16)

        // The defaults a host runs with: max_cpu_pressure 10, max_pause_ms 10, 200 ms a minute.
        let daemon = try Self.daemonWithDefaultPressureLimit()
        try daemon.writePolicy(name, "mode = \"zero\"\n")
        let load = try CPUHogs(bursts: 0.6)
        defer { load.stop() }
        // Busy, not saturated: the bursts leave idle time between them.
        let busy = cpuBusyPercent()
        #expect(busy > 40 && busy < 99, "the burst load keeps the CPUs \(busy)% busy")
        try daemon.start()
        let started = ContinuousClock.now

        // The guest's 16 MiB of zero-filled files: at least a quarter of them comes back while
        // the load goes on (a generous bound: BENCHMARKS.md has the figures of a busier host).
        func reclaim() throws -> [String: Any] { (try daemon.guest(name)?["reclaim"] as? [String: Any]) ?? [:] }
        #expect(try eventually(timeout: .seconds(240)) { int(try daemon.guest(name)?["zero_pages_reclaimed"]) >= 1024 },
                "\((try? reclaim()) ?? [:])\n\(daemon.log.suffix(3000))")
        let status = try reclaim()
        #expect(int(status["pauses"]) > 0)
        print("under the burst load: \(int(try daemon.guest(name)?["zero_pages_reclaimed"])) zero pages reclaimed "
            + "\(ContinuousClock.now - started) after samepaged started, in \(int(status["pauses"])) pauses")
        // Still busy at the end: the progress was made under the load, not after it.
        let busyAtEnd = cpuBusyPercent()
        #expect(busyAtEnd > 40, "the CPUs were \(busyAtEnd)% busy at the end")
        #expect(try daemon.guest(name)?["state"] as? String == "running")
        #expect(daemon.stop() == 0)
        #expect(try PauseJournal(path: "\(daemon.directory)/paused.json").entries().isEmpty)
    }
}

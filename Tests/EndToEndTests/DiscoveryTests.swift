import Glibc
import Foundation
import Libvirt
import SamepageAgent
import SamepageCore
import Testing

/// QEMU's shared RAM mapping of `size` bytes, read from /proc/PID/maps by the test itself.
func sharedRAMMapping(pid: pid_t, size: Int) throws -> (start: UInt64, end: UInt64, path: String) {
    let maps = try String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8)
    for line in maps.split(separator: "\n") {
        let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
        guard fields.count == 6, fields[1] == "rw-s" else { continue }
        let range = fields[0].split(separator: "-")
        let start = UInt64(range[0], radix: 16)!, end = UInt64(range[1], radix: 16)!
        if Int(end - start) == size {
            return (start, end, fields[5].trimmingCharacters(in: .whitespaces))
        }
    }
    throw TestHost.ScriptFailed(description: "no rw-s mapping of \(size) bytes in QEMU \(pid)")
}

let guestRAM = 256 << 20

@Suite("End to end: real libvirtd and QEMU guests", .serialized)
struct EndToEndTests {
    @Test("Discovery, cross-guest sharing and an independent page count, without allocating guest memory")
    func discoveryAndSharing() throws {
        let names = ["sp-e2e-a1", "sp-e2e-a2", "sp-e2e-a3", "sp-e2e-anon"]
        TestHost.removeGuests(names)
        defer { TestHost.removeGuests(names) }
        try TestHost.startGuest("sp-e2e-a1", ram: "memfd", fill: 16)
        try TestHost.startGuest("sp-e2e-a2", ram: "memfd", fill: 16)
        try TestHost.startGuest("sp-e2e-a3", ram: "file", fill: 8, seed: "other")
        try TestHost.startGuest("sp-e2e-anon", ram: "anonymous")
        let mappedNames = Array(names.prefix(3))

        let shmemBefore = TestHost.shmemBytes()
        let log = CapturedLog()
        // The file-backed guest (a disk file here) is in a group of its own: page-cache
        // residency of a disk file moves even while the guest is paused (readahead, eviction),
        // so the exact count below is made over the two memfd guests. The private-RAM guest
        // is in a group of its own too: it is not paused for the count.
        let agent = makeAgent(guests: Set(names), log: log, groups: ["sp-e2e-a3": "e2e-file", "sp-e2e-anon": "e2e-private"])
        agent.start()
        defer { agent.stop() }

        // Every guest is listed within seconds and mapped.
        #expect(eventually { names.allSatisfy { agent.snapshot.guest($0) != nil } })
        let listed = agent.snapshot
        for name in mappedNames {
            let guest = try #require(listed.guest(name))
            #expect(guest.mapped, "\(name): \(guest.reason ?? "")")
            #expect(guest.state == "running")
            // The region matches what /proc says QEMU maps.
            let mapping = try sharedRAMMapping(pid: try TestHost.qemuPID(name), size: guestRAM)
            #expect(guest.regions.count == 1)
            #expect(guest.regions.first?.bytes == guestRAM)
            #expect(guest.regions.first?.path == mapping.path.replacingOccurrences(of: " (deleted)", with: ""))
            #expect(guest.regions.first?.kind == (name == "sp-e2e-a3" ? guest.regions.first?.kind : "memfd"))
        }
        // Private RAM is accounted too, read in place in QEMU (never reclaimed).
        let anonymous = try #require(listed.guest("sp-e2e-anon"))
        #expect(anonymous.mapped, "\(anonymous.reason ?? "nil")")
        #expect(anonymous.regions.first?.kind.hasPrefix("anonymous") == true, "\(anonymous.regions)")
        #expect(anonymous.regions.first?.bytes == guestRAM)
        // The listing matches libvirt's own.
        let libvirt = try LibvirtConnection()
        let active = try libvirt.activeDomains().filter { names.contains($0.name) }
        #expect(Set(active.map { $0.uuid.uuidString.lowercased() }) == Set(names.compactMap { listed.guest($0)?.uuid }))

        // Two full scans read the guests without allocating their memory.
        #expect(eventually(timeout: .seconds(120)) { mappedNames.allSatisfy { (agent.snapshot.guest($0)?.counters.fullScans ?? 0) >= 2 } })
        let scannedBytes = mappedNames.reduce(0) { $0 + (agent.snapshot.guest($1)?.regions.first?.bytes ?? 0) }
        let shmemAfter = TestHost.shmemBytes()
        #expect(abs(shmemAfter - shmemBefore) < scannedBytes / 100, "Shmem \(shmemBefore) -> \(shmemAfter)")

        // The identical guests share their fill pattern across guests.
        let a1 = try #require(agent.snapshot.guest("sp-e2e-a1")), a2 = try #require(agent.snapshot.guest("sp-e2e-a2"))
        #expect(a1.counters.pagesShared + a1.counters.pagesSharing + a2.counters.pagesShared + a2.counters.pagesSharing > 2 * 4096)

        // Suspended for the final passes, the engine's counters equal an independent count.
        let uuids = try mappedNames.map { name in try #require(active.first { $0.name == name }?.uuid) }
        for uuid in uuids { try libvirt.suspend(uuid: uuid) }
        defer { for uuid in uuids { try? libvirt.resume(uuid: uuid) } }
        let scansAtPause = mappedNames.map { agent.snapshot.guest($0)?.counters.fullScans ?? 0 }
        #expect(eventually(timeout: .seconds(120)) {
            zip(mappedNames, scansAtPause).allSatisfy { (agent.snapshot.guest($0)?.counters.fullScans ?? 0) >= $1 + 3 }
        })
        let memfdGuests = ["sp-e2e-a1", "sp-e2e-a2"]
        var engine = Counters()
        for (i, name) in memfdGuests.enumerated() {
            engine.accumulate(try #require(agent.snapshot.guest(name)).counters, first: i == 0)
        }
        let backends = try memfdGuests.map { name in
            let pid = try TestHost.qemuPID(name)
            let mapping = try sharedRAMMapping(pid: pid, size: guestRAM)
            return (pid: pid, start: mapping.start, end: mapping.end)
        }
        let independent = try IndependentCount(backends: backends)
        #expect(engine.zeroPages == independent.zeroPages, "engine \(engine) vs \(independent)")
        #expect(engine.pagesSharing == independent.pagesSharing, "engine \(engine) vs \(independent)")
        // A content left with one copy may stay a stable node of one page, as a KSM page
        // mapped once stays one: shared or unshared, it is counted once.
        #expect(engine.pagesShared + engine.pagesUnshared == independent.pagesShared + independent.pagesUnshared,
                "engine \(engine) vs \(independent)")
        #expect(engine.pagesVolatile == 0)
    }

    @Test("A guest destroyed mid-scan leaves the engine and its RAM is released")
    func destroyMidScan() throws {
        let names = ["sp-e2e-b1", "sp-e2e-b2"]
        TestHost.removeGuests(names)
        defer { TestHost.removeGuests(names) }
        try TestHost.startGuest("sp-e2e-b1", ram: "memfd", fill: 32)
        try TestHost.startGuest("sp-e2e-b2", ram: "memfd")
        let log = CapturedLog()
        let agent = makeAgent(guests: Set(names), log: log, pagesToScan: 2000, sleep: 5)
        agent.start()
        defer { agent.stop() }
        #expect(eventually { names.allSatisfy { agent.snapshot.guest($0)?.counters.pagesScanned ?? 0 > 0 } })

        // What the host holds for the guest: its memfd's allocated blocks.
        let pid = try TestHost.qemuPID("sp-e2e-b1")
        let mapping = try sharedRAMMapping(pid: pid, size: guestRAM)
        let fd = open("/proc/\(pid)/map_files/\(String(mapping.start, radix: 16))-\(String(mapping.end, radix: 16))", O_RDONLY)
        var st = stat()
        fstat(fd, &st)
        close(fd)
        let allocated = Int(st.st_blocks) * 512
        #expect(allocated > 32 << 20)

        let shmemBefore = TestHost.shmemBytes()
        _ = try TestHost.guest("destroy", "sp-e2e-b1")
        let destroyed = ContinuousClock.now
        #expect(eventually(timeout: .seconds(5)) { agent.snapshot.guest("sp-e2e-b1") == nil },
                "QEMU alive: \(kill(pid, 0) == 0); agent log: \(log.all.suffix(20))")
        #expect(eventually(timeout: .seconds(5)) { shmemBefore - TestHost.shmemBytes() >= allocated * 9 / 10 },
                "Shmem \(shmemBefore) -> \(TestHost.shmemBytes()), guest had \(allocated), \(ContinuousClock.now - destroyed) after the destroy")
        // The other guest is still scanned.
        let scanned = agent.snapshot.guest("sp-e2e-b2")?.counters.pagesScanned ?? 0
        #expect(eventually { (agent.snapshot.guest("sp-e2e-b2")?.counters.pagesScanned ?? 0) > scanned })
        #expect(agent.snapshot.counters.pagesScanned > 0)
    }

    @Test("A file backend truncated mid-scan drops the guest's slot with a logged reason")
    func truncatedBackend() throws {
        let name = "sp-e2e-c1"
        TestHost.removeGuests([name])
        defer { TestHost.removeGuests([name]) }
        try TestHost.startGuest(name, ram: "file", fill: 8)
        let log = CapturedLog()
        let agent = makeAgent(guests: [name], log: log, pagesToScan: 2000, sleep: 5)
        agent.start()
        defer { agent.stop() }
        #expect(eventually { agent.snapshot.guest(name)?.mapped == true })

        // Paused, QEMU doesn't touch its RAM, so the agent meets the truncation before QEMU does.
        let libvirt = try LibvirtConnection()
        let uuid = try #require(try libvirt.activeDomains().first { $0.name == name }?.uuid)
        try libvirt.suspend(uuid: uuid)
        let mapping = try sharedRAMMapping(pid: try TestHost.qemuPID(name), size: guestRAM)
        #expect(truncate(mapping.path, off_t(guestRAM / 2)) == 0)

        #expect(eventually(timeout: .seconds(10)) { agent.snapshot.guest(name)?.mapped == false })
        let guest = try #require(agent.snapshot.guest(name))
        #expect(guest.reason?.contains("truncated") == true, "\(guest.reason ?? "nil")")
        #expect(log.all.contains { $0.contains("dropped region") && $0.contains("truncated") }, "\(log.all)")
        #expect(agent.snapshot.counters.pagesShared + agent.snapshot.counters.pagesUnshared == 0)
    }

    @Test("The agent survives libvirtd stopping and reconnects when it is back")
    func libvirtdRestart() throws {
        let name = "sp-e2e-d1"
        TestHost.removeGuests([name])
        defer { TestHost.removeGuests([name]) }
        try TestHost.startGuest(name, ram: "memfd")
        let log = CapturedLog()
        let agent = makeAgent(guests: [name], log: log, pagesToScan: 2000, sleep: 5)
        agent.start()
        defer { agent.stop() }
        #expect(eventually { agent.snapshot.guest(name)?.mapped == true })

        let pid = try #require(TestHost.libvirtdPID(), "libvirtd was not started by setup.sh")
        // Whatever happens below, leave libvirtd running for the tests after this one.
        defer { _ = try? TestHost.script("setup.sh", []) }
        #expect(kill(pid, SIGTERM) == 0)
        #expect(eventually(timeout: .seconds(30)) { !agent.snapshot.connected && agent.snapshot.connectionError != nil })
        #expect(eventually(timeout: .seconds(30)) { kill(pid, 0) != 0 })
        // The guest's QEMU runs on: it stays mapped and scanned while libvirtd is away.
        let scanned = agent.snapshot.guest(name)?.counters.pagesScanned ?? 0
        #expect(eventually { (agent.snapshot.guest(name)?.counters.pagesScanned ?? 0) > scanned })

        try TestHost.script("setup.sh", [])
        #expect(eventually(timeout: .seconds(30)) { agent.snapshot.connected && agent.snapshot.guest(name)?.mapped == true })
        #expect(log.all.contains { $0.contains("reconnected") })
    }
}

import Glibc
import Foundation
import Testing

/// A TCP port on 127.0.0.1 that was free a moment ago.
func freeLoopbackPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Scrapes a URL with Python's prometheus_client parser (Debian's python3-prometheus-client):
/// the HTTP status and content type, and every sample as `name{label="value",...}` with the
/// labels sorted, mapped to its value, plus each family's type.
let scrapeScript = #"""
import json, sys, urllib.request, urllib.error
from prometheus_client.parser import text_string_to_metric_families
url = sys.argv[1]
try:
    with urllib.request.urlopen(url, timeout=10) as r:
        status, ctype, text = r.status, r.headers.get("Content-Type"), r.read().decode()
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code})); sys.exit(0)
samples, types = {}, {}
for family in text_string_to_metric_families(text):
    types[family.name] = family.type
    for s in family.samples:
        labels = ",".join('%s="%s"' % (k, v) for k, v in sorted(s.labels.items()))
        samples[s.name + ("{" + labels + "}" if labels else "")] = s.value
print(json.dumps({"status": status, "content_type": ctype, "samples": samples, "types": types}))
"""#

struct Scrape {
    var status: Int
    var contentType: String?
    var samples: [String: Double]
    var types: [String: String]

    init(_ url: String) throws {
        let result = try TestHost.run("/usr/bin/python3", ["-c", scrapeScript, url])
        guard result.status == 0, let line = result.output.split(separator: "\n").last,
              let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        else { throw TestHost.ScriptFailed(description: "scraping \(url) failed:\n\(result.output)") }
        status = int(object["status"])
        contentType = object["content_type"] as? String
        samples = ((object["samples"] as? [String: Any]) ?? [:]).mapValues { ($0 as? NSNumber)?.doubleValue ?? .nan }
        types = (object["types"] as? [String: String]) ?? [:]
    }

    /// A per-guest series, labelled by the guest's UUID alone.
    func guest(_ metric: String, uuid: String) -> Double? {
        samples["\(metric){uuid=\"\(uuid)\"}"]
    }
}

@Suite("End to end: the Prometheus endpoint", .serialized)
struct MetricsEndToEndTests {
    @Test("/metrics from a daemon with real guests parses and agrees with samepage stats --json")
    func metricsAgreeWithStats() throws {
        let names = ["sp-e2e-m1", "sp-e2e-m2"]
        TestHost.removeGuests(names)
        defer { TestHost.removeGuests(names) }
        for name in names { try TestHost.startGuest(name, ram: "memfd", fill: 8) }

        let port = freeLoopbackPort()
        let daemon = try DaemonProcess(config: daemonConfig.replacingOccurrences(
            of: "address = \"\"", with: "address = \"127.0.0.1:\(port)\""))
        // One guest merges, the other reclaims zero pages too: both kinds of series move.
        try daemon.writePolicy("sp-e2e-m1", "mode = \"merge\"\ntrust_group = \"metrics\"\n")
        try daemon.writePolicy("sp-e2e-m2", "mode = \"merge\"\ntrust_group = \"metrics\"\nmax_pause_ms = 30\nmax_pause_ms_per_minute = 3000\n")
        try daemon.start()
        let url = "http://127.0.0.1:\(port)/metrics"
        // The socket opens before the startup line is written.
        #expect(eventually(timeout: .seconds(10)) { daemon.log.contains("metrics at http://127.0.0.1:\(port)/metrics") }, "\(daemon.log)")
        #expect(try eventually(timeout: .seconds(90)) {
            try names.allSatisfy { int(try daemon.guest($0)?["full_scans"]) >= 2 } && int(try daemon.stats()["pauses"]) >= 3
        }, "\(daemon.log.suffix(2000))")

        // Quiesce: no scanning; wait until reclaim has nothing left either, so the scrape and
        // the CLI read the same state.
        #expect(try daemon.cli("run", "stop").status == 0)
        #expect(try eventually { try daemon.stats()["run_mode"] as? String == "stop" })
        var stats: [String: Any] = [:]
        var guests: [[String: Any]] = []
        var scrape: Scrape?
        // The agent publishes its state every 250 ms or so: stats equal before and after, more
        // than that apart, mean the scrape between them saw the same state. samepaged's own
        // cost (`savings.agent`: its RSS and CPU time, read every second) moves while it runs
        // at all, and is not compared below: it is left out of "the same".
        func engineState(_ stats: [String: Any]) throws -> Data {
            var stats = stats
            if var savings = stats["savings"] as? [String: Any] {
                savings["agent"] = nil
                stats["savings"] = savings
            }
            return try JSONSerialization.data(withJSONObject: stats, options: .sortedKeys)
        }
        #expect(try eventually(timeout: .seconds(30)) {
            let before = try engineState(try daemon.stats())
            usleep(400_000)
            let metrics = try Scrape(url)
            let listed = try daemon.guests()
            usleep(400_000)
            let after = try daemon.stats()
            guard before == (try engineState(after)) else {
                usleep(500_000)
                return false
            }
            (stats, guests, scrape) = (after, listed, metrics)
            return true
        })
        let metrics = try #require(scrape)
        #expect(metrics.status == 200)
        #expect(metrics.contentType?.hasPrefix("text/plain; version=0.0.4") == true)

        // Global: the kernel-named counters in bytes, reclaim and the daemon's own figures.
        let page = 4096.0
        for (key, name) in [("pages_shared", "shared_bytes"), ("pages_sharing", "sharing_bytes"), ("pages_unshared", "unshared_bytes"),
                            ("pages_volatile", "volatile_bytes"), ("zero_pages", "zero_page_bytes")] {
            #expect(metrics.samples["samepage_\(name)"] == Double(int(stats[key])) * page, "\(key)")
            #expect(metrics.types["samepage_\(name)"] == "gauge", "\(key)")
        }
        for (key, name, unit) in [("full_scans", "full_scans", 1.0), ("pages_scanned", "scanned_bytes", page), ("pages_skipped", "skipped_bytes", page),
                                  ("merges_refused", "merges_refused", 1.0), ("zero_pages_reclaimed", "reclaim_punched_bytes", page)] {
            #expect(metrics.samples["samepage_\(name)_total"] == Double(int(stats[key])) * unit, "\(key)")
            #expect(metrics.types["samepage_\(name)"] == "counter", "\(key)")
        }
        #expect(int(stats["pages_sharing"]) > 0 && int(stats["zero_pages_reclaimed"]) > 0)
        #expect(metrics.samples["samepage_reclaimed_bytes_total"] == Double(int(stats["bytes_reclaimed"])))
        #expect(metrics.samples["samepage_reclaim_pauses_total"] == Double(int(stats["pauses"])))
        #expect(metrics.samples["samepage_tracking_bytes"] == Double(int(stats["tracking_bytes"])))
        #expect(metrics.samples["samepage_guests"] == Double(int(stats["guests"])))
        #expect(metrics.samples["samepage_run_state{state=\"stop\"}"] == 1 && int(stats["run"]) == 0)
        #expect(metrics.samples["samepage_run_state{state=\"merge\"}"] == 0)
        #expect(metrics.samples["samepage_libvirt_connected"] == 1)
        #expect((metrics.samples["process_resident_memory_bytes"] ?? 0) > Double(int(stats["tracking_bytes"])))
        #expect((metrics.samples["process_cpu_seconds_total"] ?? 0) > 0)
        #expect(metrics.types["process_cpu_seconds"] == "counter")  // prometheus_client drops _total
        #expect((metrics.samples["process_open_fds"] ?? 0) > 0)
        #expect(metrics.samples["samepage_build_info{version=\"0.1.0\"}"] == 1)

        // The pause histogram: cumulative buckets equal the CLI's per-bucket counts, summed.
        let reclaim = try #require(stats["reclaim"] as? [String: Any])
        let buckets = try #require(reclaim["pause_histogram"] as? [Int])
        let bounds = ["0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1", "+Inf"]
        #expect(buckets.count == bounds.count)
        var cumulative = 0
        for (bound, count) in zip(bounds, buckets) {
            cumulative += count
            #expect(metrics.samples["samepage_reclaim_pause_seconds_bucket{le=\"\(bound)\"}"] == Double(cumulative), "le=\(bound)")
        }
        #expect(metrics.samples["samepage_reclaim_pause_seconds_count"] == Double(int(stats["pauses"])))
        let sum = try #require(metrics.samples["samepage_reclaim_pause_seconds_sum"])
        let totalMs = (reclaim["pause_ms_total"] as? NSNumber)?.doubleValue ?? -1
        #expect(abs(sum * 1000 - totalMs) < 0.01, "histogram sum \(sum) s, CLI \(totalMs) ms")
        #expect(metrics.types["samepage_reclaim_pause_seconds"] == "histogram")

        // Per guest, labelled by UUID alone; name, mode and trust group in samepage_guest_info.
        for guest in guests where names.contains(guest["name"] as! String) {
            let name = guest["name"] as! String, uuid = guest["uuid"] as! String
            for (key, series) in [("pages_shared", "shared_bytes"), ("pages_sharing", "sharing_bytes"), ("pages_unshared", "unshared_bytes"),
                                  ("zero_pages", "zero_page_bytes")] {
                #expect(metrics.guest("samepage_guest_\(series)", uuid: uuid) == Double(int(guest[key])) * page, "\(name) \(key)")
            }
            for (key, series, unit) in [("full_scans", "full_scans", 1.0), ("pages_scanned", "scanned_bytes", page),
                                        ("zero_pages_reclaimed", "reclaim_punched_bytes", page)] {
                #expect(metrics.guest("samepage_guest_\(series)_total", uuid: uuid) == Double(int(guest[key])) * unit, "\(name) \(key)")
            }
            let guestReclaim = try #require(guest["reclaim"] as? [String: Any])
            #expect(metrics.guest("samepage_guest_reclaim_pause_seconds_count", uuid: uuid) == Double(int(guestReclaim["pauses"])))
            #expect(metrics.guest("samepage_guest_mapped", uuid: uuid) == 1)
            let mode = guest["mode"] as! String
            let info = "samepage_guest_info{mode=\"\(mode)\",name=\"\(name)\",source=\"libvirt\",trust_group=\"metrics\",uuid=\"\(uuid)\",vmid=\"\"}"
            #expect(metrics.samples[info] == 1, "\(info)")
        }

        // Other paths and methods; a second daemon on the same address fails clearly.
        #expect(try Scrape("http://127.0.0.1:\(port)/nothing").status == 404)
        let other = try DaemonProcess(config: daemonConfig)
        let clash = try TestHost.run(DaemonProcess.samepaged, other.arguments + ["--metrics-address", "127.0.0.1:\(port)"])
        #expect(clash.status != 0 && clash.output.contains("metrics: cannot listen on 127.0.0.1:\(port)"), "\(clash.output)")
        let malformed = try TestHost.run(DaemonProcess.samepaged, other.arguments + ["--metrics-address", "localhost"])
        #expect(malformed.status != 0 && malformed.output.contains("--metrics-address"), "\(malformed.output)")

        #expect(daemon.stop() == 0)
        #expect((try? Scrape(url)) == nil, "the endpoint closes with the daemon")
    }
}

/// A hostile scraper: `pipeliners` connections that each send `requests` pipelined
/// `GET /metrics` and never read a byte back, and `tricklers` connections that send one byte
/// every 5 s, for `seconds` seconds.
let metricsFloodScript = #"""
import socket, sys, threading, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
pipeliners, requests, tricklers = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
request = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n"
def pipeline():
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        s.sendall(request * requests)   # blocks once the server stops reading: that is the point
    except OSError:
        pass
    time.sleep(seconds)
for _ in range(pipeliners):
    threading.Thread(target=pipeline, daemon=True).start()
slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(tricklers)]
end = time.time() + seconds
while time.time() < end:
    for s in slow:
        try: s.send(b"G")
        except OSError: pass
    time.sleep(5)
print("flood done")
"""#

@Suite("End to end: a hostile scraper", .serialized)
struct MetricsFloodEndToEndTests {
    @Test("Pipelined requests never read, and trickling connections, leave samepaged's memory within 64 MiB and a normal scrape within 2 s")
    func floodStaysBounded() throws {
        let name = "sp-e2e-mflood"
        TestHost.removeGuests([name])
        defer { TestHost.removeGuests([name]) }
        try TestHost.startGuest(name, ram: "memfd", fill: 8)
        let port = freeLoopbackPort()
        let daemon = try DaemonProcess(config: daemonConfig.replacingOccurrences(
            of: "address = \"\"", with: "address = \"127.0.0.1:\(port)\""))
        try daemon.writePolicy(name, "mode = \"report\"\n")
        try daemon.start()
        defer { _ = daemon.stop() }
        let url = "http://127.0.0.1:\(port)/metrics"
        #expect(eventually(timeout: .seconds(30)) { (try? daemon.guest(name)?["mapped"] as? Bool) == true })
        // Rendered once, so that what a scrape allocates for itself is in the baseline.
        #expect(try Scrape(url).status == 200)
        let before = residentBytes(daemon.pid)
        #expect(before > 0)

        let floodLog = "\(daemon.directory)/flood.log"
        let flood = try TestHost.spawn("/usr/bin/python3", ["-c", metricsFloodScript, "\(port)", "30", "8", "2000", "16"], output: floodLog)
        defer { kill(flood, SIGKILL); _ = TestHost.wait(flood) }
        var peak = before
        var slowest: Duration = .zero
        let start = ContinuousClock.now
        while ContinuousClock.now - start < .seconds(30) {
            let scrapeStart = ContinuousClock.now
            let scrape = try TestHost.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", url])
            slowest = max(slowest, ContinuousClock.now - scrapeStart)
            #expect(scrape.output == "200", "a normal scrape during the flood: \(scrape.output)")
            peak = max(peak, residentBytes(daemon.pid))
            usleep(1_000_000)
        }
        print("metrics flood: samepaged RSS \(before >> 20) MiB before, \(peak >> 20) MiB at most during; slowest scrape \(slowest)")
        #expect(peak - before <= 64 << 20, "samepaged's RSS grew from \(before >> 20) MiB to \(peak >> 20) MiB under the flood")
        // curl's own start is in the figure too: the bound is on what a scraper sees.
        #expect(slowest < .seconds(2), "the slowest scrape during the flood took \(slowest)")
        #expect(residentBytes(daemon.pid) > 0, "samepaged died under the flood:\n\(daemon.log.suffix(2000))")
        #expect(daemon.stop() == 0)
    }
}

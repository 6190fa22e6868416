import Glibc
import Foundation
import Testing

/// The advice object of mode `mode` in an advice's `modes`.
private func mode(_ advice: [String: Any], _ mode: String) -> [String: Any] {
    ((advice["modes"] as? [[String: Any]]) ?? []).first { $0["mode"] as? String == mode } ?? [:]
}

@Suite("End to end: samepage advise", .serialized)
struct AdviceEndToEndTests {
    @Test("advise gives a shared-memory, a private-RAM and a hugepage guest each the advice its facts call for, with dominfo's figures")
    func adviceFollowsTheFacts() throws {
        let shared = "sp-e2e-adv-shm", privateRAM = "sp-e2e-adv-prv", huge = "sp-e2e-adv-huge"
        let names = [shared, privateRAM, huge]
        TestHost.removeGuests(names)
        defer { TestHost.removeGuests(names) }
        // 16 MiB of zero-filled files each: zero pages every mode is asked about.
        try TestHost.startGuest(shared, ram: "memfd", fill: 16)
        try TestHost.startGuest(privateRAM, ram: "anonymous", fill: 16)
        try TestHost.startGuest(huge, ram: "hugepages", memory: 192, fill: 16)

        let daemon = try DaemonProcess(config: daemonConfig)
        // report: the dry run, what an operator runs before choosing zero or merge.
        for name in names { try daemon.writePolicy(name, "mode = \"report\"\n") }
        try daemon.start()
        defer { _ = daemon.stop() }
        // Scanned, and the figures worked out every 5 s (attribution, huge pages) published.
        #expect(try eventually(timeout: .seconds(120)) {
            try names.allSatisfy { int(try daemon.guest($0)?["full_scans"]) >= 2 }
                && (try daemon.guest(huge)?["huge_page_zeroes"] as? [String: Any]) != nil
        }, "\(daemon.log.suffix(3000))")

        let all = try #require(try daemon.json("advise") as? [[String: Any]])
        #expect(Set(all.compactMap { $0["name"] as? String }).isSuperset(of: names))
        func dominfo(_ name: String) throws -> [String: Any] { try #require(try daemon.json("dominfo", name) as? [String: Any]) }
        /// The guest's advice and its dominfo as of the same figures: the scan goes on between
        /// two requests, so a pair is taken again until dominfo is the same on both sides of it.
        func adviceAndFacts(_ name: String) throws -> ([String: Any], [String: Any]) {
            func figures(_ g: [String: Any]) -> String {
                "\(int(g["zero_pages"])) \(int(g["sharing_attributed_bytes"])) \(((g["huge_page_zeroes"] as? [String: Any]) ?? [:]).map { "\($0.key)=\($0.value)" }.sorted()) \(int((g["reclaim"] as? [String: Any])?["pending_pages"]))"
            }
            for _ in 0..<20 {
                let before = try dominfo(name)
                let advice = try #require(try daemon.json("advise", name) as? [[String: Any]]).first ?? [:]
                let after = try dominfo(name)
                if figures(before) == figures(after) { return (advice, after) }
                usleep(200_000)
            }
            Issue.record("\(name)'s figures kept changing")
            return ([:], [:])
        }

        // Shared memory: zero pages are given back by mode zero; duplicates only private RAM
        // could realise.
        do {
            let (a, g) = try adviceAndFacts(shared)
            #expect(a["private_ram"] as? Bool == false)
            #expect(int(g["zero_pages"]) >= 4096, "\(g)")
            #expect(int(a["zero_bytes_left"]) == int(g["zero_pages"]) * 4096, "\(a)\n\(g["zero_pages"] ?? "")")
            #expect(g["reason_if_reclaiming"] is NSNull, "\(g["reason_if_reclaiming"] ?? "")")
            #expect(mode(a, "zero")["eligible"] as? Bool == true)
            #expect(int(mode(a, "zero")["would_free_bytes"]) == int(a["zero_bytes_left"]))
            #expect(int(mode(a, "off")["would_free_bytes"]) == 0 && int(mode(a, "report")["would_free_bytes"]) == 0)
            let ifPrivate = try #require(a["private_ram_would_save"] as? [String: Any], "\(a)")
            #expect(int(ifPrivate["duplicate_bytes"]) == int(g["sharing_attributed_bytes"]))
            #expect(int(ifPrivate["zero_bytes"]) == int(a["zero_bytes_left"]))
            #expect(!(a["huge_pages"] is [String: Any]))
        }
        // Private RAM: the kernel's KSM merges it; Samepage never reclaims it.
        do {
            let (a, g) = try adviceAndFacts(privateRAM)
            #expect(a["private_ram"] as? Bool == true)
            #expect(int(mode(a, "zero")["would_free_bytes"]) == 0)
            #expect((mode(a, "zero")["why"] as? String)?.contains("private RAM") == true, "\(mode(a, "zero"))")
            #expect(!(a["private_ram_would_save"] is [String: Any]))
            let refused = (g["kernel_ksm"] as? [String: Any])?["refused"] as? String
            let merge = int(mode(a, "merge")["would_free_bytes"])
            if refused != nil {
                #expect(merge == 0, "\(mode(a, "merge"))")
            } else {
                #expect(merge == int(g["sharing_attributed_bytes"]) + int(g["zero_pages"]) * 4096, "\(mode(a, "merge"))")
                #expect(merge >= 16 << 20)
            }
        }
        // hugetlbfs: zero pages count by whole huge pages; reclaim is off there by default.
        do {
            let (a, _) = try adviceAndFacts(huge)
            let pages = try #require(a["huge_pages"] as? [String: Any], "\(a)")
            #expect(int(pages["pages_per_huge_page"]) == 512)
            #expect(int(pages["huge_pages"]) == 96)  // 192 MiB in 2 MiB pages
            #expect(int(pages["all_zero"]) + int(pages["partly_zero"]) <= 96)
            #expect(int(a["zero_bytes_left"]) == int(pages["all_zero"]) * 512 * 4096)
            #expect(mode(a, "zero")["eligible"] as? Bool == false)
            #expect((mode(a, "zero")["why"] as? String)?.contains("hugetlbfs") == true, "\(mode(a, "zero"))")
        }
        // The text an operator reads names each guest and calls report the dry run.
        let text = try daemon.cli("advise")
        #expect(text.status == 0)
        for name in names { #expect(text.output.contains(name), "\(text.output)") }
        #expect(text.output.contains("the dry run"), "\(text.output)")
        #expect(daemon.stop() == 0)
    }
}

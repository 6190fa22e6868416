import Foundation
import SamepageCore
import SamepageModel
import Testing
@testable import SamepageControl

/// The control protocol's bytes, pinned: every response the daemon can give, encoded as the
/// daemon writes it, equals the line recorded in `Golden/responses.jsonl`. A change of the
/// wire format shows here as a diff to review; `SAMEPAGE_WRITE_GOLDEN=1` records it anew.
@Suite("Control protocol, byte for byte")
struct ControlGoldenTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden")

    static var responses: [(String, ControlResponse)] {
        var reclaiming = Sample.alpha
        reclaiming.reclaim.zeroPagesReclaimed = 4096
        reclaiming.reclaim.bytesReclaimed = 16 << 20
        reclaiming.reclaim.pauses = 3
        reclaiming.reclaim.pauseMillisecondsTotal = 21.5
        reclaiming.reclaim.pauseHistogram = [0, 0, 1, 2, 0, 0, 0, 0]
        reclaiming.reclaim.eligible = true
        reclaiming.kernelKSM = GuestKernelKSM(mergeable: false, refused: "policy mode report: the kernel does not merge it", mergingPages: 0, zeroPages: 12, processProfit: 40960)
        reclaiming.reclaim.deferred = ReclaimDeferral(.pauseCost, detail: "suspend and resume take 9.0 ms of max_pause_ms 10; probing again 60 s after the last pause")
        reclaiming.reclaim.deferralsForPauseCost = 2
        reclaiming.reclaim.guestSeenPauses = 3
        reclaiming.reclaim.guestSeenPauseMillisecondsTotal = 12.25
        reclaiming.reclaim.guestSeenPauseHistogram = [0, 0, 3, 0, 0, 0, 0, 0]
        var kernelTuned = Sample.stats.kernelKSM
        kernelTuned.configuration = KernelKSMConfiguration(
            enabled: true, trustGroup: "web", availableThresholdPercent: 30, advisorMode: .off, pagesToScan: 500)
        return [
            ("list", .success(.guests([Sample.alpha, Sample.beta]))),
            ("dominfo", .success(.guest(reclaiming))),
            ("stats", .success(.stats(Sample.stats))),
            ("run", .success(.run(.unmerge))),
            ("tune", .success(.tunables(Sample.stats.tunables))),
            ("ksm.tune", .success(.kernelKSM(kernelTuned))),
            ("policy show", .success(.policies(Sample.policies))),
            ("policy reload", .success(.policyReload(Sample.reload))),
            ("sharing", .success(.sharing(Sample.sharing))),
            ("version", .success(.version(VersionInfo(daemon: "0.1")))),
            ("advise", .success(.advice([Sample.advice]))),
            ("failure", .failure(.unknownGuest, "no guest named gamma")),
        ]
    }

    @Test("Every response encodes to the recorded bytes")
    func responsesMatchTheRecord() throws {
        #expect(ControlCodec.encode(.success(.version(VersionInfo(daemon: "0.1"))), id: 7).last == UInt8(ascii: "\n"))
        let lines = Self.responses.map { name, response in
            // One line each, as on the socket; the newline that ends it is the separator here.
            name + "\t" + String(decoding: ControlCodec.encode(response, id: 7).dropLast(), as: UTF8.self)
        }
        let file = Self.directory.appendingPathComponent("responses.jsonl")
        if ProcessInfo.processInfo.environment["SAMEPAGE_WRITE_GOLDEN"] == "1" {
            try lines.joined(separator: "\n").appending("\n").write(to: file, atomically: true, encoding: .utf8)
        }
        let recorded = try String(contentsOf: file, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(lines.count == recorded.count)
        for (line, golden) in zip(lines, recorded) {
            #expect(line == golden)
        }
    }
}

import Foundation
import SamepageCore
import SamepageModel
import Testing
@testable import SamepageControl

/// Every request, with typed arguments.
let everyRequest: [ControlRequest] = [
    .list, .dominfo(guest: "alpha"), .stats, .run(.stop), .run(.merge), .run(.unmerge),
    .tune(TunableChanges(pagesToScan: 500)),
    .tune(TunableChanges(pagesToScan: 1, sleepMillisecs: 0, maxKernelPages: 0, maxPageSharing: 2, smartScan: false)),
    .tune(TunableChanges(
        advisorMode: .scanTime, advisorTargetScanTime: 60, advisorMaxCPU: 30, advisorMinPagesToScan: 200,
        advisorMaxPagesToScan: 4000)),
    // The advisor off again, so the requests after these may set pages_to_scan.
    .tune(TunableChanges(pagesToScan: 64, advisorMode: .off)),
    .ksmTune(KernelKSMChanges(sleepMillisecs: 50)),
    .ksmTune(KernelKSMChanges(
        availableThresholdPercent: 100, advisorMode: AdvisorMode.off, advisorTargetScanTime: 30, advisorMaxCPU: 20, pagesToScan: 2000,
        maxPageSharing: 512, useZeroPages: false, smartScan: true)),
    .policyShow(guest: nil), .policyShow(guest: "beta"), .policyReload, .sharing, .version,
]

/// Every result, one per command.
let everyResult: [ControlResult] = [
    .guests([Sample.alpha, Sample.beta]), .guests([]), .guest(Sample.alpha), .guest(Sample.beta), .stats(Sample.stats),
    .run(.unmerge), .tunables(Tunables(pagesToScan: 7, sleepMillisecs: 1, maxKernelPages: 9, maxPageSharing: 0, smartScan: false)),
    .tunables(Tunables(
        pagesToScan: 2750, advisorMode: .scanTime, advisorTargetScanTime: 90, advisorMaxCPU: 40, advisorMinPagesToScan: 64,
        advisorMaxPagesToScan: 9000)),
    .stats(DaemonStats(tunables: Tunables(advisorMode: .scanTime), lastFullScan: FullScanTime(seconds: 0.75, cpuPercent: 12.5))),
    .kernelKSM(Sample.stats.kernelKSM),
    .kernelKSM({
        var tuned = Sample.stats.kernelKSM
        tuned.configuration = KernelKSMConfiguration(enabled: true, trustGroup: nil, advisorMode: .off, pagesToScan: 3000)
        return tuned
    }()),
    .policies(Sample.policies), .policyReload(Sample.reload), .policyReload(PolicyReloadReport()),
    .sharing(Sample.sharing), .version(VersionInfo(daemon: "0.1")),
]

private func object(_ bytes: [UInt8]) throws -> [String: Any] {
    #expect(bytes.last == UInt8(ascii: "\n"))
    #expect(bytes.dropLast().contains(UInt8(ascii: "\n")) == false)
    return try #require(try JSONSerialization.jsonObject(with: Data(bytes.dropLast())) as? [String: Any])
}

private func decode(_ text: String) -> (id: Int?, request: Result<ControlRequest, ControlFailure>) {
    ControlCodec.decodeRequest(Array(text.utf8))
}

private func failureOf(_ text: String) -> ControlFailure? {
    if case .failure(let failure) = decode(text).request { return failure }
    return nil
}

@Suite("Protocol") struct ProtocolTests {
    @Test("every request survives encoding and decoding", arguments: everyRequest)
    func requestRoundTrip(_ request: ControlRequest) throws {
        let line = ControlCodec.encode(request, id: 42)
        let json = try object(line)
        #expect(json["version"] as? Int == 1)
        #expect(json["id"] as? Int == 42)
        #expect(json["command"] as? String == request.command.rawValue)
        let decoded = ControlCodec.decodeRequest(line.dropLast())
        #expect(decoded.id == 42)
        #expect(try decoded.request.get() == request)
    }

    @Test("every result survives encoding and decoding", arguments: everyResult)
    func resultRoundTrip(_ result: ControlResult) throws {
        let line = ControlCodec.encode(.success(result), id: 9)
        let json = try object(line)
        #expect(json["version"] as? Int == 1)
        #expect(json["id"] as? Int == 9)
        #expect(json["ok"] as? Bool == true)
        #expect(json["result"] != nil)
        let decoded = try ControlCodec.decodeResponse(line.dropLast(), for: result.command)
        #expect(decoded.id == 9)
        #expect(decoded.response == .success(result))
    }

    @Test func failureRoundTrip() throws {
        let failure = ControlFailure(.unsupportedVersion, "no", supportedVersions: [1])
        let line = ControlCodec.encode(.failure(failure), id: nil)
        let json = try object(line)
        #expect(json["ok"] as? Bool == false)
        #expect(json["id"] is NSNull)
        let error = try #require(json["error"] as? [String: Any])
        #expect(error["code"] as? String == "unsupported_version")
        #expect(error["supported_versions"] as? [Int] == [1])
        // A failure decodes whatever command was asked.
        for command in ControlCommand.allCases {
            #expect(try ControlCodec.decodeResponse(line.dropLast(), for: command).response == .failure(failure))
        }
    }

    @Test("list objects carry snake_case keys and the counters at top level")
    func guestObjectKeys() throws {
        let json = try object(ControlCodec.encode(.success(.guests([Sample.alpha, Sample.beta])), id: 1))
        let guests = try #require(json["result"] as? [[String: Any]])
        #expect(guests.count == 2)
        let alpha = guests[0]
        for key in ["name", "uuid", "state", "mapped", "reason", "mode", "trust_group", "backend", "regions", "facts"]
            + Counters.CodingKeys.allCases.map(\.rawValue)
        {
            #expect(alpha.keys.contains(key), "missing \(key)")
        }
        #expect(alpha["mapped"] as? Bool == true)
        #expect(alpha["reason"] is NSNull)
        #expect(alpha["mode"] as? String == "merge")
        #expect(alpha["trust_group"] as? String == "web")
        #expect(alpha["pages_scanned"] as? Int == 786_432)
        #expect(alpha["pages_sharing"] as? Int == 25)
        #expect(alpha["zero_pages"] as? Int == 200_000)
        let regions = try #require(alpha["regions"] as? [[String: Any]])
        #expect(regions.count == 2)
        #expect(regions[0]["kind"] as? String == "memfd")
        #expect(regions[1]["path"] is NSNull)
        let facts = try #require(alpha["facts"] as? [String: Any])
        #expect(facts["hugepage_sizes_kib"] as? [Int] == [2048])
        #expect(facts["vhost_user"] as? [String] == ["virtiofs /run/vfs.sock"])
        #expect((facts["other_mappers"] as? [[String: Any]])?.first?["command"] as? String == "virtiofsd")
        #expect(facts["launch_security"] is NSNull)
        #expect(guests[1]["mapped"] as? Bool == false)
        #expect(guests[1]["reason"] as? String == "policy mode is off")
        #expect(guests[1]["trust_group"] is NSNull)
    }

    @Test("stats: kernel-named counters, run, tunables, tracking bytes, connection")
    func statsKeys() throws {
        let json = try object(ControlCodec.encode(.success(.stats(Sample.stats)), id: 1))
        let stats = try #require(json["result"] as? [String: Any])
        for key in Counters.CodingKeys.allCases.map(\.rawValue) + [
            "run", "pages_to_scan", "sleep_millisecs", "max_kernel_pages", "max_page_sharing", "smart_scan",
            "tracking_bytes", "connected",
        ] {
            #expect(stats.keys.contains(key), "missing \(key)")
        }
        #expect(stats["run"] as? Int == 1)
        #expect(stats["run_mode"] as? String == "merge")
        #expect(stats["pages_to_scan"] as? Int == 1000)
        #expect(stats["smart_scan"] as? Bool == true)
        #expect(stats["connected"] as? Bool == true)
        #expect(stats["advisor_mode"] as? String == "none")
        for key in ["advisor_target_scan_time", "advisor_max_cpu", "advisor_min_pages_to_scan", "advisor_max_pages_to_scan"] {
            #expect(stats[key] as? Int != nil, "missing \(key)")
        }
        #expect(stats["full_scan_seconds"] as? Double == 12.5)
        #expect(stats["full_scan_cpu_percent"] as? Double == 8.25)
        // Before any full scan, both are null.
        let fresh = try object(ControlCodec.encode(.success(.stats(DaemonStats())), id: 1))
        let freshStats = try #require(fresh["result"] as? [String: Any])
        #expect(freshStats["full_scan_seconds"] is NSNull && freshStats["full_scan_cpu_percent"] is NSNull)
    }

    @Test("stats from a daemon before the advisor still decode: advisor off, no full-scan time")
    func oldStatsDecode() throws {
        let old = #"{"version":1,"id":3,"ok":true,"result":{"connected":true,"connection_error":null,"full_scans":3,"guests":2,"guests_mapped":1,"max_kernel_pages":0,"max_page_sharing":256,"merges_refused":1,"pages_scanned":786432,"pages_shared":10,"pages_sharing":25,"pages_skipped":12,"pages_to_scan":1000,"pages_unshared":300,"pages_volatile":7,"run":1,"run_mode":"merge","sleep_millisecs":20,"smart_scan":true,"tracking_bytes":1048576,"zero_pages":200000}}"#
        guard case .success(.stats(let stats)) = try ControlCodec.decodeResponse(Array(old.utf8), for: .stats).response else {
            Issue.record("no stats"); return
        }
        #expect(stats.tunables == Tunables(pagesToScan: 1000, advisorMode: .off))
        #expect(stats.lastFullScan == nil)
        let oldTune = #"{"version":1,"id":7,"ok":true,"result":{"max_kernel_pages":0,"max_page_sharing":256,"pages_to_scan":500,"sleep_millisecs":20,"smart_scan":true}}"#
        #expect(try ControlCodec.decodeResponse(Array(oldTune.utf8), for: .tune).response
            == .success(.tunables(Tunables(pagesToScan: 500))))
    }

    @Test("tune against the knobs in force: who sets pages_to_scan")
    func tuneAgainstTheKnobsInForce() throws {
        let advised = Tunables(pagesToScan: 2750, sleepMillisecs: 20, advisorMode: .scanTime)
        // The advisor stays on: its pages_to_scan stays, the rest changes.
        #expect(try TunableChanges(sleepMillisecs: 5).applied(to: advised)
            == Tunables(pagesToScan: 2750, sleepMillisecs: 5, advisorMode: .scanTime))
        // scan-time again is no change of mode: no restart.
        #expect(try TunableChanges(advisorMode: .scanTime).applied(to: advised) == advised)
        // pages_to_scan while it is on is refused, saying how to set it.
        #expect(throws: ControlFailure(.invalidArgument, TunableChanges.pagesToScanFollowsAdvisor)) {
            try TunableChanges(pagesToScan: 10).applied(to: advised)
        }
        #expect(TunableChanges.pagesToScanFollowsAdvisor.contains("advisor_mode = \"none\""))
        // Off: samepaged's 1000, or the one given with it.
        #expect(try TunableChanges(advisorMode: .off).applied(to: advised)
            == Tunables(pagesToScan: 1000, sleepMillisecs: 20, advisorMode: .off))
        #expect(try TunableChanges(pagesToScan: 64, advisorMode: .off).applied(to: advised).pagesToScan == 64)
        // On from off: from advisor_min_pages_to_scan, the one given with it if any.
        let byHand = Tunables(pagesToScan: 64, advisorMode: .off)
        #expect(try TunableChanges(advisorMode: .scanTime).applied(to: byHand).pagesToScan == 500)
        let restarted = try TunableChanges(advisorMode: .scanTime, advisorMinPagesToScan: 800).applied(to: byHand)
        #expect(restarted.advisorMode == .scanTime && restarted.pagesToScan == 800)
        // Off, pages_to_scan is free.
        #expect(try TunableChanges(pagesToScan: 7).applied(to: byHand).pagesToScan == 7)
        // The bounds are checked against the knobs in force: 400 is fine alone, not under 500.
        let lowMax = TunableChanges(advisorMaxPagesToScan: 400)
        try lowMax.validate()
        #expect(throws: ControlFailure(
            .invalidArgument,
            "advisor_max_pages_to_scan = 400 is out of range: expected at least advisor_min_pages_to_scan (500)")) {
            try lowMax.applied(to: advised)
        }
        #expect(try TunableChanges(advisorMinPagesToScan: 100, advisorMaxPagesToScan: 400).applied(to: advised)
            .advisorMaxPagesToScan == 400)
    }

    @Test("ksm.tune: [kernel_ksm]'s keys; enabled and trust_group stay the file's; pages_to_scan only with the advisor off")
    func kernelTune() throws {
        #expect(try decode(#"{"version":1,"id":1,"command":"ksm.tune","sleep_millisecs":5,"use_zero_pages":false}"#).request.get()
            == .ksmTune(KernelKSMChanges(sleepMillisecs: 5, useZeroPages: false)))
        let refused: [(String, ControlErrorCode, String)] = [
            (#""enabled":false"#, .invalidArgument, "kernel_ksm.enabled changes in the configuration file only"),
            (#""trust_group":"web","sleep_millisecs":5"#, .invalidArgument, "kernel_ksm.trust_group changes in the configuration file only"),
            (#""available_threshold_percent":0"#, .invalidArgument, "kernel_ksm.available_threshold_percent is 0: expected 1 to 100"),
            (#""advisor_max_cpu":101"#, .invalidArgument, "kernel_ksm.advisor_max_cpu is 101: expected 1 to 100"),
            (#""max_page_sharing":1"#, .invalidArgument, "kernel_ksm.max_page_sharing is 1: expected at least 2"),
            (#""pages_to_scan":4294967296"#, .invalidArgument, "kernel_ksm.pages_to_scan is 4294967296"),
            (#""advisor_mode":"auto""#, .invalidArgument, "advisor_mode \"auto\" is not one of \"none\", \"scan-time\""),
            (#""smart_scan":1"#, .badRequest, "\"smart_scan\" must be true or false"),
            (#""pages_to_scan":"many""#, .badRequest, "\"pages_to_scan\" must be an integer"),
            (#""unknown":1"#, .badRequest, "ksm.tune needs at least one of available_threshold_percent, advisor_mode"),
        ]
        for (arguments, code, message) in refused {
            let failure = try #require(failureOf(#"{"version":1,"id":1,"command":"ksm.tune",\#(arguments)}"#), "accepted \(arguments)")
            #expect(failure.code == code, "\(arguments): \(failure)")
            #expect(failure.message.hasPrefix(message), "\(arguments): \(failure.message)")
        }
        // Against the settings in force: the advisor decides who sets pages_to_scan.
        let advised = KernelKSMConfiguration(enabled: true, trustGroup: "web")
        #expect(throws: ControlFailure(.invalidArgument, KernelKSMChanges.pagesToScanFollowsAdvisor)) {
            try KernelKSMChanges(pagesToScan: 500).applied(to: advised)
        }
        let byHand = try KernelKSMChanges(advisorMode: AdvisorMode.off, pagesToScan: 500).applied(to: advised)
        #expect(byHand == KernelKSMConfiguration(enabled: true, trustGroup: "web", advisorMode: .off, pagesToScan: 500))
        #expect(try KernelKSMChanges(pagesToScan: 50).applied(to: byHand).pagesToScan == 50)
        // What is not asked stays, the file's enabled and trust group included.
        let tuned = try KernelKSMChanges(availableThresholdPercent: 100, smartScan: false).applied(to: advised)
        #expect(tuned == KernelKSMConfiguration(enabled: true, trustGroup: "web", availableThresholdPercent: 100, smartScan: false))
    }

    @Test("policy.show, sharing and version objects")
    func otherResultKeys() throws {
        let policies = try #require(
            try object(ControlCodec.encode(.success(.policies(Sample.policies)), id: 1))["result"] as? [[String: Any]])
        #expect(policies[0]["source"] as? String == "/etc/samepage/guests.d/alpha.toml")
        #expect(policies[1]["source"] is NSNull)
        let policy = try #require(policies[0]["policy"] as? [String: Any])
        #expect(
            Set(policy.keys) == [
                "mode", "trust_group", "max_pages", "max_pause_ms", "max_pause_ms_per_minute", "reclaim_hugetlbfs",
            ])
        #expect(policy["max_pages"] as? Int == 1000)
        #expect((policies[1]["policy"] as? [String: Any])?["trust_group"] is NSNull)

        let sharing = try #require(try object(ControlCodec.encode(.success(.sharing(Sample.sharing)), id: 1))["result"] as? [String: Any])
        #expect(sharing["guests"] as? [String] == ["alpha", "beta"])
        #expect(sharing["pages"] as? [[Int]] == [[10, 4], [4, 0]])

        let version = try #require(
            try object(ControlCodec.encode(.success(.version(VersionInfo(daemon: "0.1"))), id: 1))["result"] as? [String: Any])
        #expect(version["protocol"] as? Int == 1)
        #expect(version["daemon"] as? String == "0.1")

        let reload = try #require(try object(ControlCodec.encode(.success(.policyReload(Sample.reload)), id: 1))["result"] as? [String: Any])
        #expect(reload["errors"] as? [String] == Sample.reload.errors)
    }

    @Test("a guest's mappers travel on the wire: vhost-user backends with their socket, apart from others")
    func guestMappersOnTheWire() throws {
        var guest = Sample.alpha
        guest.facts.vhostUserBackends = [MapperProcess(pid: 41, command: "virtiofsd", socket: "/run/vu.sock")]
        guest.facts.otherMappers = [MapperProcess(pid: 42, command: "python3")]
        let line = ControlCodec.encode(.success(.guest(guest)), id: 7)
        let facts = try #require((try object(line)["result"] as? [String: Any])?["facts"] as? [String: Any])
        let backends = try #require(facts["vhost_user_backends"] as? [[String: Any]])
        #expect(backends.first?["socket"] as? String == "/run/vu.sock" && backends.first?["command"] as? String == "virtiofsd")
        #expect((facts["other_mappers"] as? [[String: Any]])?.first?["pid"] as? Int == 42)
        #expect(try ControlCodec.decodeResponse(line.dropLast(), for: .dominfo).response == .success(.guest(guest)))
    }

    @Test("requests: unknown fields are ignored, id is optional, run takes names or numbers")
    func lenientRequests() throws {
        let decoded = decode(#"{"version":1,"id":3,"command":"dominfo","guest":"alpha","colour":"blue","extra":{"a":[1]}}"#)
        #expect(decoded.id == 3)
        #expect(try decoded.request.get() == .dominfo(guest: "alpha"))
        #expect(try decode(#"{"version":1,"command":"list"}"#).request.get() == .list)
        #expect(decode(#"{"version":1,"command":"list"}"#).id == nil)
        #expect(try decode(#"{"version":1,"id":1,"command":"run","mode":2}"#).request.get() == .run(.unmerge))
        #expect(try decode(#"{"version":1,"id":1,"command":"policy.show","guest":null}"#).request.get() == .policyShow(guest: nil))
        #expect(
            try decode(#"{"version":1,"id":1,"command":"tune","sleep_millisecs":5,"pages_to_scan":null}"#).request.get()
                == .tune(TunableChanges(sleepMillisecs: 5)))
    }

    @Test("malformed lines are bad requests")
    func malformed() throws {
        for text in ["{", "not json", "", "[1,2]", "42", "\"list\"", #"{"version":1,"id":1,"command":"list""#] {
            let failure = try #require(failureOf(text), "accepted \(text)")
            #expect(failure.code == .badRequest, "\(text): \(failure)")
        }
        #expect(failureOf(#"{"id":1,"command":"list"}"#)?.code == .badRequest)
        #expect(failureOf(#"{"version":"1","id":1,"command":"list"}"#)?.code == .badRequest)
        #expect(failureOf(#"{"version":1,"id":"x","command":"list"}"#)?.code == .badRequest)
        #expect(failureOf(#"{"version":1,"id":1}"#)?.message == "missing \"command\"")
        #expect(failureOf(#"{"version":1,"id":1,"command":7}"#)?.code == .badRequest)
        // The id is echoed whenever it could be read.
        #expect(decode(#"{"version":1,"id":5,"command":7}"#).id == 5)
    }

    @Test func unsupportedVersion() throws {
        let decoded = decode(#"{"version":2,"id":8,"command":"list"}"#)
        #expect(decoded.id == 8)
        guard case .failure(let failure) = decoded.request else { Issue.record("accepted version 2"); return }
        #expect(failure.code == .unsupportedVersion)
        #expect(failure.message.contains("version 1"))
        #expect(failure.supportedVersions == [1])
    }

    @Test func unknownCommand() throws {
        let failure = try #require(failureOf(#"{"version":1,"id":1,"command":"reboot"}"#))
        #expect(failure.code == .unknownCommand)
        #expect(failure.message.contains("reboot"))
        #expect(failure.message.contains("policy.show"))
    }

    @Test("missing or mistyped arguments are bad requests naming the field")
    func badArguments() throws {
        let cases: [(String, String)] = [
            (#"{"version":1,"id":1,"command":"dominfo"}"#, "guest"),
            (#"{"version":1,"id":1,"command":"dominfo","guest":3}"#, "guest"),
            (#"{"version":1,"id":1,"command":"policy.show","guest":[]}"#, "guest"),
            (#"{"version":1,"id":1,"command":"run"}"#, "mode"),
            (#"{"version":1,"id":1,"command":"run","mode":true}"#, "mode"),
            (#"{"version":1,"id":1,"command":"tune"}"#, "pages_to_scan"),
            (#"{"version":1,"id":1,"command":"tune","pages_to_scan":"many"}"#, "pages_to_scan"),
            (#"{"version":1,"id":1,"command":"tune","sleep_millisecs":1.5}"#, "sleep_millisecs"),
            (#"{"version":1,"id":1,"command":"tune","smart_scan":1}"#, "smart_scan"),
            (#"{"version":1,"id":1,"command":"tune","advisor_mode":1}"#, "advisor_mode"),
            (#"{"version":1,"id":1,"command":"tune","advisor_max_cpu":"half"}"#, "advisor_max_cpu"),
        ]
        for (text, field) in cases {
            let failure = try #require(failureOf(text), "accepted \(text)")
            #expect(failure.code == .badRequest, "\(text): \(failure)")
            #expect(failure.message.contains(field), "\(text): \(failure.message)")
        }
    }

    @Test("out-of-range values are invalid arguments naming the tunable")
    func invalidArguments() throws {
        let cases: [(String, String)] = [
            (#""pages_to_scan":0"#, "pages_to_scan"),
            (#""pages_to_scan":4294967296"#, "pages_to_scan"),
            (#""sleep_millisecs":-1"#, "sleep_millisecs"),
            (#""max_kernel_pages":-5"#, "max_kernel_pages"),
            (#""max_page_sharing":1"#, "max_page_sharing"),
            (#""pages_to_scan":10,"max_page_sharing":-1"#, "max_page_sharing"),
            (#""advisor_mode":"auto""#, "advisor_mode \"auto\" is not one of \"none\", \"scan-time\""),
            (#""advisor_target_scan_time":0"#, "advisor_target_scan_time"),
            (#""advisor_max_cpu":0"#, "advisor_max_cpu"),
            (#""advisor_max_cpu":101"#, "advisor_max_cpu"),
            (#""advisor_min_pages_to_scan":0"#, "advisor_min_pages_to_scan"),
            (#""advisor_max_pages_to_scan":4294967296"#, "advisor_max_pages_to_scan"),
            // The request itself turns the advisor on and sets pages_to_scan: refused whatever is in force.
            (#""advisor_mode":"scan-time","pages_to_scan":10"#, "pages_to_scan follows the scan-time advisor"),
        ]
        for (arguments, name) in cases {
            let failure = try #require(failureOf(#"{"version":1,"id":1,"command":"tune",\#(arguments)}"#))
            #expect(failure.code == .invalidArgument, "\(arguments): \(failure)")
            #expect(failure.message.hasPrefix(name), "\(arguments): \(failure.message)")
        }
        #expect(failureOf(#"{"version":1,"id":1,"command":"run","mode":"pause"}"#)?.code == .invalidArgument)
        #expect(failureOf(#"{"version":1,"id":1,"command":"run","mode":3}"#)?.code == .invalidArgument)
        #expect(failureOf(#"{"version":1,"id":1,"command":"dominfo","guest":""}"#)?.code == .invalidArgument)
    }

    @Test("responses the client cannot read are invalid")
    func invalidResponses() throws {
        let lines = [
            "garbage",
            #"{"version":1,"id":1,"ok":true}"#,
            #"{"version":2,"id":1,"ok":true,"result":{"protocol":2,"daemon":"9"}}"#,
            #"{"version":1,"id":1,"ok":true,"result":{"guests":["a"],"pages":[[1,2]]}}"#,
        ]
        let commands: [ControlCommand] = [.list, .version, .version, .sharing]
        for (line, command) in zip(lines, commands) {
            #expect(throws: ControlError.self, "\(line)") {
                _ = try ControlCodec.decodeResponse(Array(line.utf8), for: command)
            }
        }
        // An unknown error code from a newer daemon is kept as it is.
        let newer = #"{"version":3,"id":1,"ok":false,"error":{"code":"frobnicated","message":"m"}}"#
        #expect(
            try ControlCodec.decodeResponse(Array(newer.utf8), for: .list).response
                == .failure(ControlFailure(ControlErrorCode("frobnicated"), "m")))
    }

    @Test("json(_:) prints a result as the wire carries it")
    func printing() throws {
        let text = ControlCodec.json(.stats(Sample.stats), pretty: true)
        #expect(text.contains("\"pages_sharing\" : 25"))
        #expect(!ControlCodec.json(.version(VersionInfo(daemon: "0.1"))).contains("\n"))
    }
}

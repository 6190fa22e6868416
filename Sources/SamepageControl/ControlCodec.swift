import Foundation
import SamepageCore
import SamepageModel

/// Encodes and decodes the protocol's lines: one JSON object per line, UTF-8, ending in `\n`.
///
/// Requests are `{"version":1,"id":N,"command":"...", ...arguments}`; responses
/// `{"version":1,"id":N,"ok":true,"result":...}` or
/// `{"version":1,"id":N,"ok":false,"error":{"code":"...","message":"..."}}`.
public enum ControlCodec {
    // MARK: Requests

    /// The line that sends `request`, newline included.
    public static func encode(_ request: ControlRequest, id: Int?) -> [UInt8] {
        // Encoding strings and integers cannot fail.
        line(try! encoder().encode(RequestLine(id: id, request: request)))
    }

    /// Reads a request line (without its newline).
    ///
    /// Returns the request's `id` whenever it could be read, so that a failure can be answered
    /// to it, and the request or a failure: `bad_request` for anything that is not a request
    /// object (with a message naming the field at fault), `unsupported_version`,
    /// `unknown_command`, `invalid_argument` for values out of range. Unknown fields are
    /// ignored.
    public static func decodeRequest(_ line: some Collection<UInt8>) -> (id: Int?, request: Result<ControlRequest, ControlFailure>) {
        let data = Data(line)
        let id = (try? JSONDecoder().decode(IDProbe.self, from: data))?.id
        do {
            return (id, .success(try JSONDecoder().decode(RequestLine.self, from: data).request))
        } catch let failure as ControlFailure {
            return (id, .failure(failure))
        } catch DecodingError.dataCorrupted(let context) where context.codingPath.isEmpty {
            return (id, .failure(ControlFailure(.badRequest, "malformed JSON: the line is not one valid JSON value")))
        } catch {
            return (id, .failure(ControlFailure(.badRequest, "bad request: \(describe(error))")))
        }
    }

    // MARK: Responses

    /// The line that answers request `id` with `response`, newline included.
    ///
    /// A result that cannot be encoded is answered with an `internal` failure.
    public static func encode(_ response: ControlResponse, id: Int?) -> [UInt8] {
        do {
            return line(try encoder().encode(ResponseLine(id: id, response: response)))
        } catch {
            let failure = ControlFailure(.internal, "the daemon could not encode its response: \(error)")
            return line(try! encoder().encode(ResponseLine(id: id, response: .failure(failure))))
        }
    }

    /// Reads a response line (without its newline) to a request for `command`.
    ///
    /// An `ok: false` response decodes to `.failure` whatever its version, so that an
    /// `unsupported_version` error from another daemon reaches the caller; a successful one
    /// must carry version 1. Throws ``ControlError/invalidResponse(_:)`` for anything else.
    public static func decodeResponse(
        _ line: some Collection<UInt8>, for command: ControlCommand
    ) throws(ControlError) -> (id: Int?, response: ControlResponse) {
        let decoder = JSONDecoder()
        decoder.userInfo[ResponseLine.commandKey] = command
        do {
            let decoded = try decoder.decode(ResponseLine.self, from: Data(line))
            return (decoded.id, decoded.response)
        } catch let error as ControlError {
            throw error
        } catch {
            throw .invalidResponse("the daemon's response to \(command.rawValue) is not valid: \(describe(error))")
        }
    }

    /// A result as the JSON value a response carries (the same objects and keys), for printing.
    public static func json(_ result: ControlResult, pretty: Bool = false) -> String {
        let encoder = encoder()
        if pretty { encoder.outputFormatting.insert(.prettyPrinted) }
        do {
            return String(decoding: try encoder.encode(ResultValue(result: result)), as: UTF8.self)
        } catch {
            return "null"
        }
    }

    // MARK: Helpers

    static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    private static func line(_ data: Data) -> [UInt8] {
        var bytes = [UInt8](data)
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }

    /// A short account of a decoding error: where, and what.
    static func describe(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return keys.isEmpty ? "" : "at \(keys.dropFirst(keys.hasPrefix(".") ? 1 : 0)): "
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "\(path(context))missing \"\(key.stringValue)\""
        case .typeMismatch(let type, let context):
            return "\(path(context))expected \(type)"
        case .valueNotFound(let type, let context):
            return "\(path(context))expected \(type), found null"
        case .dataCorrupted(let context):
            return "\(path(context))\(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}

// MARK: - Request lines

/// Reads only a request's `id`, leniently, so that failures can be answered to it.
private struct IDProbe: Decodable {
    var id: Int?

    init(from decoder: any Decoder) throws {
        id = try? decoder.container(keyedBy: WireKey.self).decodeIfPresent(Int.self, forKey: "id")
    }
}

/// A line's object with the envelope that every line starts with already written: the
/// protocol's `version` and the request's `id` (null when it has none).
private func envelope(_ encoder: any Encoder, id: Int?) throws -> KeyedEncodingContainer<WireKey> {
    var c = encoder.container(keyedBy: WireKey.self)
    try c.encode(ControlProtocol.version, forKey: "version")
    try c.encode(id, forKey: "id")
    return c
}

private struct RequestLine: Encodable {
    var id: Int?
    var request: ControlRequest

    func encode(to encoder: any Encoder) throws {
        var c = try envelope(encoder, id: id)
        try c.encode(request.command.rawValue, forKey: "command")
        switch request {
        case .list, .stats, .policyReload, .sharing, .version:
            break
        case .dominfo(let guest):
            try c.encode(guest, forKey: "guest")
        case .run(let mode):
            try c.encode(mode.name, forKey: "mode")
        case .tune(let changes):
            // The arguments are the tunables' own keys, each only when it changes.
            var t = encoder.container(keyedBy: Tunables.CodingKeys.self)
            try Self.encode(changes.integers, into: &t)
            try t.encodeIfPresent(changes.smartScan, forKey: .smartScan)
            try t.encodeIfPresent(changes.advisorMode, forKey: .advisorMode)
        case .ksmTune(let changes):
            // The arguments are [kernel_ksm]'s own keys, each only when it changes.
            var k = encoder.container(keyedBy: KernelKSMConfiguration.CodingKeys.self)
            try Self.encode(changes.integers, into: &k)
            try k.encodeIfPresent(changes.advisorMode, forKey: .advisorMode)
            try k.encodeIfPresent(changes.useZeroPages, forKey: .useZeroPages)
            try k.encodeIfPresent(changes.smartScan, forKey: .smartScan)
        case .policyShow(let guest), .advise(let guest):
            try c.encodeIfPresent(guest, forKey: "guest")
        }
    }
}

extension RequestLine {
    /// Integer changes, each under its own key.
    private static func encode<Key: CodingKey & Hashable>(_ integers: [Key: Int], into c: inout KeyedEncodingContainer<Key>) throws {
        for (key, value) in integers {
            try c.encode(value, forKey: key)
        }
    }
}

// Decoding is in an extension, so that the memberwise initializer stays (as for ResponseLine).
extension RequestLine: Decodable {
    /// Checks in the order a client needs to hear about problems: object, version, id,
    /// command, arguments. Throws ``ControlFailure``.
    init(from decoder: any Decoder) throws {
        let c: WireDecoding
        do {
            c = try decoder.container(keyedBy: WireKey.self)
        } catch {
            throw ControlFailure(.badRequest, "a request must be a JSON object")
        }
        let supported = ControlProtocol.supportedVersions
        guard let version = try Self.field(c, "version", Int.self, "an integer") else {
            throw ControlFailure(
                .badRequest, "missing \"version\": this daemon speaks protocol version \(ControlProtocol.version)",
                supportedVersions: supported)
        }
        guard supported.contains(version) else {
            throw ControlFailure(
                .unsupportedVersion,
                "protocol version \(version) is not supported: this daemon speaks version \(ControlProtocol.version)",
                supportedVersions: supported)
        }
        id = try Self.field(c, "id", Int.self, "an integer")
        guard let name = try Self.field(c, "command", String.self, "a string") else {
            throw ControlFailure(.badRequest, "missing \"command\"")
        }
        guard let command = ControlCommand(rawValue: name) else {
            let known = ControlCommand.allCases.map(\.rawValue).joined(separator: ", ")
            throw ControlFailure(.unknownCommand, "unknown command \"\(name)\": expected one of \(known)")
        }
        switch command {
        case .list: request = .list
        case .stats: request = .stats
        case .policyReload: request = .policyReload
        case .sharing: request = .sharing
        case .version: request = .version
        case .dominfo:
            guard let guest = try Self.field(c, "guest", String.self, "a string (a guest name or UUID)") else {
                throw ControlFailure(.badRequest, "dominfo needs \"guest\": a guest name or UUID")
            }
            guard !guest.isEmpty else { throw ControlFailure(.invalidArgument, "\"guest\" must not be empty") }
            request = .dominfo(guest: guest)
        case .policyShow:
            let guest = try Self.field(c, "guest", String.self, "a string (a guest name or UUID)")
            if guest?.isEmpty == true { throw ControlFailure(.invalidArgument, "\"guest\" must not be empty") }
            request = .policyShow(guest: guest)
        case .advise:
            let guest = try Self.field(c, "guest", String.self, "a string (a guest name or UUID)")
            if guest?.isEmpty == true { throw ControlFailure(.invalidArgument, "\"guest\" must not be empty") }
            request = .advise(guest: guest)
        case .run:
            request = .run(try Self.runMode(c))
        case .tune:
            let changes = TunableChanges(
                integers: try Self.integers(c, Tunables.integerKnobs),
                smartScan: try Self.field(c, Tunables.CodingKeys.smartScan.stringValue, Bool.self, "true or false"),
                advisorMode: try Self.advisorMode(c))
            guard !changes.isEmpty else {
                let names = Tunables.CodingKeys.allCases.map(\.stringValue).joined(separator: ", ")
                throw ControlFailure(.badRequest, "tune needs at least one of \(names)")
            }
            try changes.validate()
            request = .tune(changes)
        case .ksmTune:
            typealias Key = KernelKSMConfiguration.CodingKeys
            for key in [Key.enabled, .trustGroup] where c.contains(WireKey(key.stringValue)) {
                throw ControlFailure(
                    .invalidArgument,
                    "kernel_ksm.\(key.stringValue) changes in the configuration file only (then reload samepaged: SIGHUP)")
            }
            let changes = KernelKSMChanges(
                integers: try Self.integers(c, KernelKSMConfiguration.integerKnobs),
                advisorMode: try Self.advisorMode(c),
                useZeroPages: try Self.field(c, Key.useZeroPages.stringValue, Bool.self, "true or false"),
                smartScan: try Self.field(c, Key.smartScan.stringValue, Bool.self, "true or false"))
            guard !changes.isEmpty else {
                let names = KernelKSMChanges.keys.map(\.stringValue).joined(separator: ", ")
                throw ControlFailure(.badRequest, "ksm.tune needs at least one of \(names)")
            }
            try changes.validate()
            request = .ksmTune(changes)
        }
    }

    /// The integer knobs of `knobs` that the request gives, each an integer (a `bad_request`
    /// naming it otherwise); their ranges are the caller's to check.
    private static func integers<Root, Key: CodingKey & Hashable & Sendable>(
        _ c: WireDecoding, _ knobs: [IntegerKnob<Root, Key>]
    ) throws(ControlFailure) -> [Key: Int] {
        var values: [Key: Int] = [:]
        for knob in knobs {
            values[knob.key] = try field(c, knob.key.stringValue, Int.self, "an integer")
        }
        return values
    }

    /// An optional field: nil when absent or null; a `bad_request` naming it when mistyped.
    private static func field<T: Decodable>(
        _ c: WireDecoding, _ key: String, _ type: T.Type, _ expected: String
    ) throws(ControlFailure) -> T? {
        do {
            return try c.decodeIfPresent(T.self, forKey: WireKey(key))
        } catch {
            throw ControlFailure(.badRequest, "\"\(key)\" must be \(expected)")
        }
    }

    /// `"advisor_mode"` of a `tune` or `ksm.tune`: one of the kernel's names, or nil when absent.
    private static func advisorMode(_ c: WireDecoding) throws(ControlFailure) -> AdvisorMode? {
        let key = Tunables.CodingKeys.advisorMode.stringValue
        let names = AdvisorMode.allCases.map { "\"\($0.name)\"" }.joined(separator: ", ")
        guard let name = try field(c, key, String.self, "a string: \(names)") else { return nil }
        guard let mode = AdvisorMode(rawValue: name) else {
            throw ControlFailure(.invalidArgument, "\(key) \"\(name)\" is not one of \(names)")
        }
        return mode
    }

    /// `"mode"`: a name, or the kernel's number.
    private static func runMode(_ c: WireDecoding) throws(ControlFailure) -> RunMode {
        let names = RunMode.allCases.map(\.name).joined(separator: ", ")
        if let number = try? c.decodeIfPresent(Int.self, forKey: "mode") {
            guard let mode = RunMode(rawValue: number) else {
                throw ControlFailure(.invalidArgument, "mode \(number) is not one of \(names) (or 0, 1, 2)")
            }
            return mode
        }
        guard let name = try field(c, "mode", String.self, "one of \(names)") else {
            throw ControlFailure(.badRequest, "run needs \"mode\": one of \(names)")
        }
        guard let mode = RunMode(name: name) else {
            throw ControlFailure(.invalidArgument, "mode \"\(name)\" is not one of \(names)")
        }
        return mode
    }
}

// MARK: - Response lines

private struct ResponseLine: Encodable {
    static let commandKey = CodingUserInfoKey(rawValue: "samepage.control.command")!

    var id: Int?
    var response: ControlResponse

    func encode(to encoder: any Encoder) throws {
        var c = try envelope(encoder, id: id)
        switch response {
        case .success(let result):
            try c.encode(true, forKey: "ok")
            try c.encode(ResultValue(result: result), forKey: "result")
        case .failure(let failure):
            try c.encode(false, forKey: "ok")
            var e = c.nestedContainer(keyedBy: WireKey.self, forKey: "error")
            try e.encode(failure.code, forKey: "code")
            try e.encode(failure.message, forKey: "message")
            try e.encodeIfPresent(failure.supportedVersions, forKey: "supported_versions")
        }
    }
}

extension ResponseLine: Decodable {
    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: WireKey.self)
        id = try c.decodeIfPresent(Int.self, forKey: "id")
        let version = try c.decodeIfPresent(Int.self, forKey: "version")
        if try c.decode(Bool.self, forKey: "ok") {
            guard version == ControlProtocol.version else {
                throw ControlError.invalidResponse(
                    "the daemon speaks protocol version \(version.map(String.init) ?? "(none)"), not \(ControlProtocol.version)")
            }
            guard let command = decoder.userInfo[Self.commandKey] as? ControlCommand else {
                throw ControlError.invalidResponse("no command to read a result for")
            }
            let result = try c.superDecoder(forKey: "result")
            response = .success(try ControlResult(wireFrom: result, for: command))
        } else {
            let e = try c.nestedContainer(keyedBy: WireKey.self, forKey: "error")
            response = .failure(
                ControlFailure(
                    try e.decode(ControlErrorCode.self, forKey: "code"),
                    try e.decodeIfPresent(String.self, forKey: "message") ?? "",
                    supportedVersions: try e.decodeIfPresent([Int].self, forKey: "supported_versions")))
        }
    }
}

/// A result as the value of `"result"`.
private struct ResultValue: Encodable {
    var result: ControlResult
    func encode(to encoder: any Encoder) throws { try result.value.encode(to: encoder) }
}

import SamepageCore

/// The settings' file form, kept while samepaged governs ksmd (`HostDefaults.kernelKSMSaved`)
/// so that the host's own settings survive a crash of samepaged: one key per knob, the
/// kernel's file name, absent for a knob the kernel did not have; `run` as its number.
extension KernelKSMSettings: Codable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: KnobKey.self)
        self.init()
        if let run = try c.decodeIfPresent(Int.self, forKey: KnobKey(KernelKSMKnob<RunMode>.run.name)) {
            guard let mode = RunMode(rawValue: run) else {
                throw DecodingError.dataCorruptedError(
                    forKey: KnobKey(KernelKSMKnob<RunMode>.run.name), in: c, debugDescription: "run must be 0, 1 or 2, not \(run)")
            }
            self.run = mode
        }
        for field in Self.fields {
            try field.decode(&self, c)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: KnobKey.self)
        try c.encodeIfPresent(run?.rawValue, forKey: KnobKey(KernelKSMKnob<RunMode>.run.name))
        for field in Self.fields {
            try field.encode(self, &c)
        }
    }
}

extension KernelKSMSettings {
    /// One knob of the settings but `run`, and where it lives, its type of value erased: what
    /// ``writes`` and the file form walk.
    struct Field: Sendable {
        /// The knob's file name.
        let name: String
        /// The text written to the knob's file, nil when the knob is not set.
        let text: @Sendable (KernelKSMSettings) -> String?
        let decode: @Sendable (inout KernelKSMSettings, KeyedDecodingContainer<KnobKey>) throws -> Void
        let encode: @Sendable (KernelKSMSettings, inout KeyedEncodingContainer<KnobKey>) throws -> Void

        init<Value: KernelKSMValue & Codable>(
            _ knob: KernelKSMKnob<Value>, _ keyPath: WritableKeyPath<KernelKSMSettings, Value?> & Sendable
        ) {
            let key = KnobKey(knob.name)
            name = knob.name
            text = { $0[keyPath: keyPath]?.sysfsText }
            decode = { settings, c in settings[keyPath: keyPath] = try c.decodeIfPresent(Value.self, forKey: key) }
            encode = { settings, c in try c.encodeIfPresent(settings[keyPath: keyPath], forKey: key) }
        }
    }

    /// The knobs but `run`, in the order the kernel accepts them written (see the type's
    /// discussion).
    static let fields: [Field] = [
        Field(.sleepMillisecs, \.sleepMillisecs),
        Field(.stableNodeChainsPruneMillisecs, \.stableNodeChainsPruneMillisecs),
        Field(.useZeroPages, \.useZeroPages),
        Field(.smartScan, \.smartScan),
        Field(.maxPageSharing, \.maxPageSharing),
        Field(.mergeAcrossNodes, \.mergeAcrossNodes),
        Field(.advisorTargetScanTime, \.advisorTargetScanTime),
        Field(.advisorMaxCPU, \.advisorMaxCPU),
        Field(.advisorMinPagesToScan, \.advisorMinPagesToScan),
        Field(.advisorMaxPagesToScan, \.advisorMaxPagesToScan),
        Field(.advisorMode, \.advisorMode),
        Field(.pagesToScan, \.pagesToScan),
    ]
}

/// A key of the file form: a knob's file name.
struct KnobKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }

    init(_ name: String) { stringValue = name }
    init?(stringValue: String) { self.init(stringValue) }
    init?(intValue: Int) { nil }
}

// The commands an agent that pauses guests sends, typed. Each is ``QMPConnection/execute(_:
// arguments:timeout:)`` and a reading of its reply; a reply without the members its command
// returns is a ``QMPError/protocolViolation(path:detail:)`` naming the command (the
// connection stays usable: the message itself was whole). Members a newer QEMU adds are
// ignored.

extension QMPConnection {
    /// `stop`: pauses the guest's vCPUs, and returns once QEMU has also drained its block I/O.
    ///
    /// QEMU stops the vCPUs, emits `STOP` (kept in ``pendingEvents``, with the moment the
    /// vCPUs stopped), drains in-flight disk requests, and only then replies: the reply, not
    /// the event, is when the guest's memory is no longer written by its devices' I/O. On a
    /// guest already paused it emits nothing and succeeds.
    @available(*, noasync, message: "blocks the calling thread for up to its timeout")
    public mutating func stop(timeout: Duration = .seconds(10)) throws(QMPError) {
        try execute("stop", timeout: timeout)
    }

    /// `cont`: resumes the guest's vCPUs (QEMU emits `RESUME`). Fails for a guest QEMU will
    /// not resume, such as one waiting for an incoming migration.
    @available(*, noasync, message: "blocks the calling thread for up to its timeout")
    public mutating func cont(timeout: Duration = .seconds(5)) throws(QMPError) {
        try execute("cont", timeout: timeout)
    }

    /// `query-status`: whether the guest runs, and why not.
    @available(*, noasync, message: "blocks the calling thread for up to its timeout")
    public mutating func queryStatus(timeout: Duration = .seconds(5)) throws(QMPError) -> QMPRunState {
        try query("query-status", timeout: timeout, QMPRunState.init(reply:))
    }

    /// `query-name`: the guest's `-name`; nil when QEMU was started without one (it replies
    /// `{}`).
    @available(*, noasync, message: "blocks the calling thread for up to its timeout")
    public mutating func queryName(timeout: Duration = .seconds(5)) throws(QMPError) -> String? {
        try query("query-name", timeout: timeout) { reply throws(QMPReplyError) in
            try QMPReplyReader(reply, "the query-name reply").optionalString("name")
        }
    }

    /// `query-uuid`: the guest's `-uuid`, as text (`00000000-0000-0000-0000-000000000000`
    /// when QEMU was started without one).
    @available(*, noasync, message: "blocks the calling thread for up to its timeout")
    public mutating func queryUUID(timeout: Duration = .seconds(5)) throws(QMPError) -> String {
        try query("query-uuid", timeout: timeout) { reply throws(QMPReplyError) in
            try QMPReplyReader(reply, "the query-uuid reply").string("UUID")
        }
    }

    /// Who the guest on this socket says it is: `query-name` and `query-uuid`, both within
    /// `timeout`. Compare it with the guest expected on the socket before pausing anything: a
    /// socket path can be reused by another QEMU.
    @available(*, noasync, message: "blocks the calling thread for up to its timeout")
    public mutating func identity(timeout: Duration = .seconds(5)) throws(QMPError) -> QMPIdentity {
        let deadline = ContinuousClock.now + timeout
        let name = try query("query-name", until: deadline) { reply throws(QMPReplyError) in
            try QMPReplyReader(reply, "the query-name reply").optionalString("name")
        }
        let uuid = try query("query-uuid", until: deadline) { reply throws(QMPReplyError) in
            try QMPReplyReader(reply, "the query-uuid reply").string("UUID")
        }
        return QMPIdentity(name: name, uuid: uuid)
    }

    /// `query-memdev`: the guest's memory backends, with their `merge` and `share`.
    @available(*, noasync, message: "blocks the calling thread for up to its timeout")
    public mutating func queryMemdev(timeout: Duration = .seconds(5)) throws(QMPError) -> [QMPMemoryBackend] {
        try query("query-memdev", timeout: timeout) { reply throws(QMPReplyError) in
            try replyObjects(reply, "a query-memdev backend").map(QMPMemoryBackend.init)
        }
    }

    /// `query-jobs`: the guest's block jobs (backup, mirror, …), concluded ones included
    /// until they are dismissed.
    @available(*, noasync, message: "blocks the calling thread for up to its timeout")
    public mutating func queryJobs(timeout: Duration = .seconds(5)) throws(QMPError) -> [QMPJob] {
        try query("query-jobs", timeout: timeout) { reply throws(QMPReplyError) in
            try replyObjects(reply, "a query-jobs job").map(QMPJob.init)
        }
    }

    /// `query-migrate`: the guest's outgoing migration, if there ever was one.
    @available(*, noasync, message: "blocks the calling thread for up to its timeout")
    public mutating func queryMigrate(timeout: Duration = .seconds(5)) throws(QMPError) -> QMPMigration {
        try query("query-migrate", timeout: timeout, QMPMigration.init(reply:))
    }

    /// `query-pci`: every PCI function of the guest, those behind bridges included, each
    /// bridge before what is behind it.
    @available(*, noasync, message: "blocks the calling thread for up to its timeout")
    public mutating func queryPCI(timeout: Duration = .seconds(5)) throws(QMPError) -> [QMPPCIDevice] {
        try query("query-pci", timeout: timeout, QMPPCIDevice.flattening(reply:))
    }

    /// `qom-list`: the properties of the QOM object at `path`, such as
    /// `/machine/peripheral` (the devices with an `id`, each a `child<TYPE>`).
    @available(*, noasync, message: "blocks the calling thread for up to its timeout")
    public mutating func qomList(path objectPath: String, timeout: Duration = .seconds(5)) throws(QMPError) -> [QMPObjectProperty] {
        try query("qom-list", arguments: ["path": .string(objectPath)], timeout: timeout) { reply throws(QMPReplyError) in
            try replyObjects(reply, "a qom-list property").map(QMPObjectProperty.init)
        }
    }

    /// `qom-get`: the value of `property` of the QOM object at `path`, as QEMU sends it.
    @available(*, noasync, message: "blocks the calling thread for up to its timeout")
    public mutating func qomGet(path objectPath: String, property: String, timeout: Duration = .seconds(5)) throws(QMPError) -> QMPValue {
        try execute("qom-get", arguments: ["path": .string(objectPath), "property": .string(property)], timeout: timeout)
    }

    /// Runs `command` and reads its reply with `read`, waiting until `deadline` at most.
    private mutating func query<Reply>(
        _ command: String, arguments: [String: QMPValue]? = nil, until deadline: ContinuousClock.Instant,
        _ read: (QMPValue) throws(QMPReplyError) -> Reply
    ) throws(QMPError) -> Reply {
        let reply = try execute(command, arguments: arguments, until: deadline)
        do { return try read(reply) } catch { throw .protocolViolation(path: path, detail: "\(command): \(error.detail)") }
    }

    /// Runs `command` and reads its reply with `read`.
    private mutating func query<Reply>(
        _ command: String, arguments: [String: QMPValue]? = nil, timeout: Duration,
        _ read: (QMPValue) throws(QMPReplyError) -> Reply
    ) throws(QMPError) -> Reply {
        let reply = try execute(command, arguments: arguments, timeout: timeout)
        do { return try read(reply) } catch { throw .protocolViolation(path: path, detail: "\(command): \(error.detail)") }
    }
}

/// Who a QEMU says it is: its `-name` and `-uuid`, as ``QMPConnection/identity(timeout:)``
/// reads them.
public struct QMPIdentity: Sendable, Hashable {
    /// The guest's `-name`; nil when QEMU was started without one.
    public var name: String?
    /// The guest's `-uuid` as QEMU writes it (lower case;
    /// `00000000-0000-0000-0000-000000000000` when QEMU was started without one).
    public var uuid: String

    public init(name: String?, uuid: String) {
        self.name = name
        self.uuid = uuid
    }
}

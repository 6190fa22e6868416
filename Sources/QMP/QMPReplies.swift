/// One block job of `query-jobs` (QAPI's `JobInfo`): a backup, mirror, commit, stream, …
///
/// A paused guest with a running job still does I/O (a backup reads its disks); an agent
/// that pauses guests to merge their memory leaves a guest alone while a job runs.
public struct QMPJob: Sendable, Hashable {
    /// The job's id (often the drive's, `drive-scsi0`).
    public var id: String
    /// QAPI's `JobType`: `backup`, `mirror`, `commit`, `stream`, `create`, `amend`,
    /// `snapshot-load`, `snapshot-save`, `snapshot-delete`.
    public var type: String
    /// QAPI's `JobStatus`: `created`, `running`, `paused`, `ready`, `standby`, `waiting`,
    /// `pending`, `aborting`, `concluded`, `null`.
    public var status: String
    /// Progress so far and in all, in units of the job's own (bytes for block jobs).
    public var currentProgress: Int64
    public var totalProgress: Int64
    /// Why the job failed, once it has.
    public var error: String?

    public init(id: String, type: String, status: String, currentProgress: Int64, totalProgress: Int64, error: String? = nil) {
        self.id = id
        self.type = type
        self.status = status
        self.currentProgress = currentProgress
        self.totalProgress = totalProgress
        self.error = error
    }

    /// Whether the job is still under way (neither concluded nor gone).
    public var isActive: Bool { status != "concluded" && status != "null" }

    init(_ reader: QMPReplyReader) throws(QMPReplyError) {
        self.init(
            id: try reader.string("id"), type: try reader.string("type"), status: try reader.string("status"),
            currentProgress: try reader.int("current-progress"), totalProgress: try reader.int("total-progress"),
            error: try reader.optionalString("error"))
    }
}

/// What `query-migrate` says of the guest's outgoing migration (QAPI's `MigrationInfo`).
public struct QMPMigration: Sendable, Hashable {
    /// The migration's status; ``QMPMigrationStatus/none`` when there was never one (QEMU
    /// then replies `{}`).
    public var status: QMPMigrationStatus
    /// How long the migration has run, or ran.
    public var totalTime: Duration?
    /// How long the guest was stopped at its end (once completed).
    public var downtime: Duration?

    public init(status: QMPMigrationStatus, totalTime: Duration? = nil, downtime: Duration? = nil) {
        self.status = status
        self.totalTime = totalTime
        self.downtime = downtime
    }

    init(reply: QMPValue) throws(QMPReplyError) {
        let reader = try QMPReplyReader(reply, "the query-migrate reply")
        self.init(
            status: QMPMigrationStatus(rawValue: try reader.optionalString("status") ?? "none"),
            totalTime: try reader.optionalInt("total-time").map { .milliseconds($0) },
            downtime: try reader.optionalInt("downtime").map { .milliseconds($0) })
    }
}

/// QAPI's `MigrationStatus`, as QEMU writes it; a name this client does not list is kept as
/// it came.
public struct QMPMigrationStatus: Sendable, Hashable, RawRepresentable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let none = QMPMigrationStatus(rawValue: "none")
    public static let setup = QMPMigrationStatus(rawValue: "setup")
    public static let active = QMPMigrationStatus(rawValue: "active")
    public static let completed = QMPMigrationStatus(rawValue: "completed")
    public static let failed = QMPMigrationStatus(rawValue: "failed")
    public static let cancelling = QMPMigrationStatus(rawValue: "cancelling")
    public static let cancelled = QMPMigrationStatus(rawValue: "cancelled")

    /// Whether a migration is under way: any status but `none`, `completed`, `failed` and
    /// `cancelled` (so `setup`, `active`, `postcopy-*`, `pre-switchover`, `device`,
    /// `wait-unplug`, `cancelling`, `colo`, and any this client does not know).
    public var isInProgress: Bool {
        ![Self.none, .completed, .failed, .cancelled].contains(self)
    }

    public var description: String { rawValue }
}

/// One property of a QOM object, from `qom-list` (QAPI's `ObjectPropertyInfo`).
///
/// `qom-list` of `/machine/peripheral` lists the devices that have an `id` on the command
/// line, each as a `child<TYPE>` property: `{"name": "hostpci0", "type": "child<vfio-pci>"}`.
public struct QMPObjectProperty: Sendable, Hashable {
    public var name: String
    /// The property's type: `string`, `bool`, `uint64`, `child<virtio-net-pci>`,
    /// `link<memory-backend>`, …
    public var type: String

    public init(name: String, type: String) {
        self.name = name
        self.type = type
    }

    /// For a `child<TYPE>` property, TYPE: the QOM type of the child object.
    public var childType: String? { enclosed(in: "child<") }

    /// For a `link<TYPE>` property, TYPE: the QOM type of the linked object.
    public var linkType: String? { enclosed(in: "link<") }

    private func enclosed(in prefix: String) -> String? {
        guard type.hasPrefix(prefix), type.hasSuffix(">"), type.count > prefix.count + 1 else { return nil }
        return String(type.dropFirst(prefix.count).dropLast())
    }

    init(_ reader: QMPReplyReader) throws(QMPReplyError) {
        self.init(name: try reader.string("name"), type: try reader.string("type"))
    }
}

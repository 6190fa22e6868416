import GuestMemory

/// The host's process list as the agent last took it (``ProcessTable``: the proc root's
/// directory and every process's `stat`), shared by its two readers: who maps guest RAM
/// (``GuestMappers``, at most once a second outside a pause) and the QEMUs outside libvirt
/// (``QEMUScanner``, every reconcile interval). Whichever needs the list first takes a table;
/// the other uses that one while it is under ``sharedFor`` old, so a loop iteration that runs
/// both reads `/proc` once.
///
/// Each reader still goes by the age of the table it used (``GuestMappers/lastRefresh`` is the
/// table's time, not the time it was read from it), so what a pause checks ("the index is
/// under a second old") stays true of the processes themselves.
///
/// Its own room: the latest table is read by nothing else. A class, since both readers hold it;
/// it lives on the agent's thread only.
final class ProcessTables {
    /// How old a table may be and still be handed to a reader.
    static let sharedFor: Duration = .seconds(1)

    let procRoot: String
    /// The latest table taken.
    private(set) var latest: ProcessTable?
    /// Tables taken since the agent started (each one `readdir` and a `stat` per process).
    private(set) var taken = 0

    init(procRoot: String) {
        self.procRoot = procRoot
    }

    /// The latest table when it is under `maxAge` old at `now`; otherwise a new one, taken now.
    func table(at now: ContinuousClock.Instant = .now, maxAge: Duration = sharedFor) -> ProcessTable {
        if let latest, now - latest.taken < maxAge { return latest }
        let table = ProcessTable.read(procRoot: procRoot, at: now)
        latest = table
        taken += 1
        return table
    }
}

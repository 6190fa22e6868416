/// Where Samepage lives on a host unless told otherwise: the one place these paths and the
/// libvirt URI are written. The daemon's configuration, the agent, the pause journal and the
/// command-line tool take their defaults from here.
public enum HostDefaults {
    /// The libvirt connection: the system QEMU driver.
    public static let libvirtURI = "qemu:///system"
    /// The daemon's configuration file, read if it exists.
    public static let configurationFile = "/etc/samepage/samepaged.toml"
    /// The control socket.
    public static let controlSocket = "/run/samepage/samepaged.sock"
    /// The per-guest policy files.
    public static let policyDirectory = "/etc/samepage/guests.d"
    /// The journal of pauses under way; `samepaged --resume-paused` always replays it.
    public static let pauseJournal = "/var/lib/samepage/paused.json"
    /// The index of every other pause journal a samepaged has used on this host.
    public static let pauseJournalIndex = "/var/lib/samepage/journals.json"
}

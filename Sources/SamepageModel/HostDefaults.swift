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
    /// The host's own ksmd settings while samepaged governs ksmd (`[kernel_ksm] enabled`):
    /// put back when it stops, by `samepaged --resume-paused` after a crash, or by the next
    /// samepaged.
    public static let kernelKSMSaved = "/var/lib/samepage/kernel-ksm.json"
}

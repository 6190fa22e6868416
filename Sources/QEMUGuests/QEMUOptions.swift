/// A QEMU command line split into its options, each with its value if it takes one.
///
/// QEMU's options take a value or none, and which is which is QEMU's option table: walking
/// the arguments in pairs (as ``GuestMemory/QEMUCommandLine`` does for the few options it
/// reads) takes the value of one option for the next option when they are out of step. So
/// this walk knows the options that take a value (``valueOptions``): their value is
/// consumed and never read as an option, however it is spelled (`-append "-name x"`). An
/// option it does not know is taken as a flag; if it really takes a value, that value is
/// looked at as the next option and, unless it is itself spelled like one of the options
/// read here, passed over.
///
/// QEMU accepts `--name` for `-name`; both are read as `-name`. It does not accept
/// `-name=value`, so neither does this. Arguments that do not start with `-` are
/// positional (QEMU's legacy disk image) and left out.
struct QEMUOptions {
    /// The options with a value, in command-line order, spelled with one dash.
    private(set) var pairs: [(option: String, value: String)] = []
    /// The options without a value (`-mem-prealloc`, `-daemonize`), spelled with one dash.
    private(set) var flags: Set<String> = []

    init(arguments: [String]) {
        var index = arguments.startIndex + 1  // argv[0] is the program.
        while index < arguments.endIndex {
            let argument = arguments[index]
            index += 1
            guard argument.count > 1, argument.hasPrefix("-") else { continue }
            let option = argument.hasPrefix("--") ? String(argument.dropFirst()) : argument
            if Self.valueOptions.contains(String(option.dropFirst())), index < arguments.endIndex {
                pairs.append((option, arguments[index]))
                index += 1
            } else {
                flags.insert(option)
            }
        }
    }

    /// The values of `option` (`-chardev`), in order.
    func values(of option: String) -> [String] {
        pairs.compactMap { $0.option == option ? $0.value : nil }
    }

    /// The last value of `option`: QEMU lets a repeated option of one value override.
    func last(_ option: String) -> String? {
        pairs.last { $0.option == option }?.value
    }

    /// The options and values as one argument list, `argv[0]` first, for the readers of
    /// ``GuestMemory/QEMUCommandLine`` (which look at `-object VALUE` pairs).
    var normalizedArguments: [String] {
        [""] + pairs.flatMap { [$0.option, $0.value] }
    }

    /// QEMU's options that take a value (without the dash): those read here and the common
    /// others, so that none of their values is read as an option.
    static let valueOptions: Set<String> = [
        // Read by QEMUGuestCommandLine.
        "name", "uuid", "smbios", "pidfile", "id", "qmp", "qmp-pretty", "chardev", "mon", "monitor",
        "object", "overcommit", "realtime", "mem-path", "m", "device", "netdev", "blockdev", "drive",
        // Others.
        "machine", "M", "cpu", "smp", "accel", "append", "kernel", "initrd", "dtb", "bios", "L", "boot",
        "vnc", "display", "spice", "vga", "serial", "parallel", "debugcon", "global", "k", "rtc", "numa",
        "msg", "sandbox", "runas", "chroot", "run-with", "D", "d", "incoming", "fsdev", "virtfs", "audiodev",
        "trace", "iscsi", "cdrom", "hda", "hdb", "hdc", "hdd", "fda", "fdb", "mtdblock", "sd", "pflash",
        "usbdevice", "nic", "net", "fw_cfg", "add-fd", "loadvm", "action", "plugin", "compat", "icount",
        "watchdog-action", "semihosting-config", "tpmdev", "xen-domid", "option-rom", "set", "readconfig",
        "g", "prom-env",
    ]
}

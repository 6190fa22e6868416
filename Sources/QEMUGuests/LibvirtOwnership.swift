import Foundation
import Glibc
import GuestMemory
import LinuxSystem

/// Why a QEMU process is libvirt's: Samepage finds libvirt's guests through libvirt, with
/// their domain XML, so discovery in /proc must leave them out, or each would be tracked
/// twice, once without what libvirt knows of it.
///
/// libvirt leaves three marks on the QEMUs it starts, and any one of them is enough:
///
/// - its pid file: `RUN/NAME.pid` (`/run/libvirt/qemu` for the system daemon) holds the pid
///   (``pidFile(_:)``). libvirt writes it once QEMU has started, so a QEMU found in its first
///   moments may not be listed yet: the other marks are there from the start.
/// - its master key: libvirt hands every QEMU a secret `-object secret,id=masterKey0,file=…`
///   from the domain's private directory (`/var/lib/libvirt/qemu/domain-ID-NAME/master-key.aes`,
///   or `~/.config/libvirt/qemu/lib/domain-…` for a session daemon), in QemuOpts or JSON
///   syntax, together with `-name guest=NAME` (``masterKey(_:)``). Nobody else writes that
///   pair: it is libvirt's command line, whoever ran it.
/// - its cgroup: with systemd, libvirt's guests run in a scope under
///   `machine.slice/machine-qemu…` (``cgroup(_:)``); Proxmox's are under `qemu.slice`.
public enum LibvirtOwnership: Sendable, Hashable, CustomStringConvertible {
    /// The pid is in this libvirt pid file, or QEMU was told to write its pid file in
    /// libvirt's run directory.
    case pidFile(String)
    /// The command line has libvirt's master key secret, at this file.
    case masterKey(String)
    /// The process is in this cgroup of libvirt's (a line of `/proc/PID/cgroup`, its path).
    case cgroup(String)

    public var description: String {
        switch self {
        case .pidFile(let path): "libvirt's pid file \(path)"
        case .masterKey(let path): "libvirt's master key \(path) on the command line"
        case .cgroup(let path): "libvirt's cgroup \(path)"
        }
    }

    /// Whether the QEMU `pid` is libvirt's, and by which mark (checked in the order above),
    /// or nil when it bears none. Pure: the caller reads the process's `arguments`, its
    /// `cgroup` file (nil when it could not be read) and the libvirt pid files.
    ///
    /// - Parameters:
    ///   - libvirtPIDFiles: the pids of libvirt's pid files, with each file's path
    ///     (``readPIDFiles(runDirectory:)``).
    ///   - runDirectory: libvirt's QEMU run directory, for a `-pidfile` in it.
    public static func owner(
        pid: pid_t, arguments: [String], cgroup: String?, libvirtPIDFiles: [pid_t: String],
        runDirectory: String = "/run/libvirt/qemu"
    ) -> LibvirtOwnership? {
        if let path = libvirtPIDFiles[pid] { return .pidFile(path) }
        let options = QEMUOptions(arguments: arguments)
        if let pidFile = options.last("-pidfile"), pidFile.hasPrefix(runDirectory.hasSuffix("/") ? runDirectory : runDirectory + "/") {
            return .pidFile(pidFile)
        }
        if let key = masterKeyFile(options) { return .masterKey(key) }
        if let cgroup, let path = libvirtCgroup(cgroup) { return .cgroup(path) }
        return nil
    }

    /// The master key file of a libvirt command line: an `-object` of type `secret` and id
    /// `masterKey0` whose file is in a libvirt domain directory, on a command line with
    /// `-name guest=…`.
    static func masterKeyFile(_ options: QEMUOptions) -> String? {
        let guestNamed = options.values(of: "-name").contains { QEMUCommandLine.optsProperties($0)["guest"] != nil }
        guard guestNamed else { return nil }
        for value in options.values(of: "-object") {
            let properties = value.hasPrefix("{") ? QEMUCommandLine.flatJSONProperties(value) : QEMUCommandLine.optsProperties(value)
            guard properties["qom-type"] ?? properties[""] == "secret", properties["id"] == "masterKey0",
                  let file = properties["file"],
                  file.hasPrefix("/var/lib/libvirt/qemu/domain-") || file.contains("/libvirt/qemu/lib/domain-")
            else { continue }
            return file
        }
        return nil
    }

    /// The path of a `/proc/PID/cgroup` line (`0::/machine.slice/machine-qemu\x2d1\x2dweb.scope/libvirt/emulator`
    /// for cgroup v2, `N:CONTROLLERS:PATH` for v1) that is under `machine.slice/machine-qemu`.
    static func libvirtCgroup(_ text: String) -> String? {
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, fields[2].contains("machine.slice/machine-qemu") else { continue }
            return String(fields[2])
        }
        return nil
    }

    /// The pids of the `*.pid` files of libvirt's QEMU run directory, with each file's path:
    /// one `readdir` and a small read per guest. A directory that is not there (no libvirt
    /// on the host) has none; a file that vanishes or does not hold a pid is passed over.
    public static func readPIDFiles(runDirectory: String = "/run/libvirt/qemu") -> [pid_t: String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: runDirectory) else { return [:] }
        var pids: [pid_t: String] = [:]
        for name in names where name.hasSuffix(".pid") {
            let path = "\(runDirectory)/\(name)"
            guard let bytes = try? readWholeFile(path, limit: 64),
                  let pid = pid_t(String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)),
                  pid > 0
            else { continue }
            pids[pid] = path
        }
        return pids
    }
}

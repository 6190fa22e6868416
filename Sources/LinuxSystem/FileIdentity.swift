import Glibc

/// A file's identity: the device and inode that `stat` and `/proc/PID/maps` report, with
/// the device split into major and minor numbers as the maps file writes them.
///
/// Two paths, or a path and a descriptor, name the same file exactly when their identities
/// are equal: `stat` of a guest's backend against its maps line, or the socket file the
/// control server bound against what is at its path at shutdown.
public struct FileIdentity: Sendable, Hashable, CustomStringConvertible {
    public var deviceMajor: UInt32
    public var deviceMinor: UInt32
    public var inode: UInt64

    public init(deviceMajor: UInt32, deviceMinor: UInt32, inode: UInt64) {
        self.deviceMajor = deviceMajor
        self.deviceMinor = deviceMinor
        self.inode = inode
    }

    /// The identity of a `stat` result, decoding glibc's `dev_t` layout (a one-to-one split:
    /// equal identities are equal `st_dev` and `st_ino`).
    public init(_ status: stat) {
        let dev = UInt64(status.st_dev)
        deviceMajor = UInt32(truncatingIfNeeded: ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff))
        deviceMinor = UInt32(truncatingIfNeeded: ((dev >> 12) & 0xffff_ff00) | (dev & 0xff))
        inode = UInt64(status.st_ino)
    }

    /// As the maps file writes it: `MAJOR:MINOR INODE`, the device numbers in hex, at least two
    /// digits each (`fe:01 1180321`).
    public var description: String {
        "\(Self.hex(deviceMajor)):\(Self.hex(deviceMinor)) \(inode)"
    }

    private static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return digits.count < 2 ? "0" + digits : digits
    }
}

import Foundation
import GuestMemory

/// A QEMU's balloon device, `-device virtio-balloon-pci,free-page-reporting=on` (or
/// `virtio-balloon-ccw`, `virtio-balloon-device`, in either option syntax): with free page
/// reporting the guest's driver hands the pages it freed back to the host.
public struct QEMUBalloon: Sendable, Hashable {
    /// The device driver: `virtio-balloon-pci`, ...
    public var driver: String
    /// `free-page-reporting=on`.
    public var freePageReporting: Bool

    /// A balloon of the values given.
    public init(driver: String, freePageReporting: Bool) {
        self.driver = driver
        self.freePageReporting = freePageReporting
    }

    /// The first balloon device among the options; nil without one.
    static func find(in options: QEMUOptions) -> QEMUBalloon? {
        for value in options.values(of: "-device") {
            let properties = QEMUGuestDevice.properties(value)
            guard let driver = properties["driver"] ?? properties[""], driver.hasPrefix("virtio-balloon") else { continue }
            return QEMUBalloon(driver: driver, freePageReporting: Self.reporting(value, properties))
        }
        return nil
    }

    /// `free-page-reporting`: a string in QemuOpts (`on`, `true`, ...), a JSON bool or string
    /// in JSON syntax (whose flat properties keep strings only).
    private static func reporting(_ value: String, _ properties: [String: String]) -> Bool {
        if let text = properties["free-page-reporting"] { return QEMUCommandLine.parseBool(text) ?? false }
        guard value.hasPrefix("{"),
              let object = try? JSONSerialization.jsonObject(with: Data(value.utf8)) as? [String: Any]
        else { return false }
        return object["free-page-reporting"] as? Bool ?? false
    }
}

import Foundation
import QMP

/// QMP's words turned into the agent's, next to the QMP queries (``QEMUGuestQueries``) and
/// the QMP pause transport's event delivery.
extension GuestRunState {
    /// QEMU's run state (`query-status`), named as libvirt would name the same state, as
    /// `list` shows every guest's.
    init(_ status: QMPRunState) {
        switch status.status {
        case .running: self = .running
        case .shutdown: self = .shutOff
        case .guestPanicked, .internalError: self = .crashed
        case .suspended: self = .pmSuspended
        default: self = status.running ? .running : .paused
        }
    }
}

extension GuestMonitorEvent {
    /// One of QEMU's QMP events of the guest `uuid`; nil for any but `STOP` and `RESUME`.
    init?(_ event: QMPEvent, of uuid: UUID) {
        guard let kind = Kind(qemuName: event.name) else { return nil }
        self.init(uuid: uuid, kind: kind, timestamp: event.timestamp.secondsSinceEpoch)
    }
}

import Foundation
import Glibc
import LinuxSystem

/// A QEMU process held by a pidfd, so that its pid cannot be recycled under us: everything
/// read from `/proc/PID` is trusted only if the pidfd shows the process alive afterwards.
///
/// The pidfd turns readable when the process exits (``hasExited``), which tells a dead
/// guest's backends to be released even when libvirtd is down. Each region opened through
/// the process gets a pidfd of its own (``openRAMRegions(expecting:access:)``).
public struct QEMUProcess: ~Copyable, Sendable {
    public let pid: pid_t
    /// The pidfd: owned by this value, closed with it.
    private let pidfd: OwnedDescriptor

    /// Opens a pidfd for `pid`.
    public init(pid: pid_t) throws(SystemError) {
        self.pid = pid
        self.pidfd = try LinuxCalls.pidfdOpen(pid)
    }

    /// Finds the QEMU of a libvirt guest from libvirt's pid file (`RUN/NAME.pid`) and checks
    /// that the process's command line is that guest's (`-name guest=NAME` and `-uuid UUID`).
    public static func libvirtGuest(
        name: String, uuid: UUID, runDirectory: String = "/run/libvirt/qemu"
    ) throws(UnmappableReason) -> QEMUProcess {
        let pidFile = "\(runDirectory)/\(name).pid"
        let text: String
        do { text = String(decoding: try readWholeFile(pidFile), as: UTF8.self) } catch {
            throw error.errno == .noSuchFileOrDirectory ? .processGone : UnmappableReason(error)
        }
        guard let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0 else {
            throw .processGone
        }
        let process: QEMUProcess
        do { process = try QEMUProcess(pid: pid) } catch {
            throw error.errno == .noSuchProcess ? .processGone : UnmappableReason(error)
        }
        let arguments = try process.commandLine()
        guard isCommandLine(arguments, ofGuest: name, uuid: uuid) else { throw .processGone }
        return process
    }

    /// Whether QEMU arguments are those of the named guest.
    static func isCommandLine(_ arguments: [String], ofGuest name: String, uuid: UUID) -> Bool {
        let pairs = Array(zip(arguments, arguments.dropFirst()))
        let hasName = pairs.contains { option, value in
            // `-name guest=NAME,debug-threads=on`, or the older `-name NAME`; `,,` is a comma.
            let properties = QEMUCommandLine.optsProperties(value)
            return option == "-name" && (properties["guest"] ?? properties[""]) == name
        }
        let hasUUID = pairs.contains { $0 == "-uuid" && $1.lowercased() == uuid.uuidString.lowercased() }
        return hasName && hasUUID
    }

    /// Whether the process has exited (its pidfd is readable).
    public var hasExited: Bool { Self.hasExited(pidfd: pidfd.descriptor) }

    static func hasExited(pidfd: FileDescriptor) -> Bool {
        var entry = pollfd(fd: pidfd.rawValue, events: Int16(POLLIN), revents: 0)
        while true {
            let ready = poll(&entry, 1, 0)
            if ready >= 0 { return ready > 0 }
            if errno != EINTR { return true }
        }
    }

    /// The process's arguments (`/proc/PID/cmdline`).
    public func commandLine() throws(UnmappableReason) -> [String] {
        try whileAlive { () throws(SystemError) in
            QEMUCommandLine.arguments(cmdline: try readWholeFile("/proc/\(pid)/cmdline"))
        }
    }

    /// The process's memory map (`/proc/PID/maps`).
    public func mappings() throws(UnmappableReason) -> [MemoryMapping] {
        try whileAlive { () throws(SystemError) in try MemoryMapping.read(pid: pid) }
    }

    /// Runs a read of `/proc/PID` and confirms the process was still alive after it.
    private func whileAlive<T>(_ body: () throws(SystemError) -> T) throws(UnmappableReason) -> T {
        let result: T
        do { result = try body() } catch {
            let gone = error.errno == .noSuchFileOrDirectory || error.errno == .noSuchProcess
            throw hasExited || gone ? .processGone : UnmappableReason(error)
        }
        guard !hasExited else { throw .processGone }
        return result
    }

    /// Opens every RAM backend of the guest as a region.
    ///
    /// `expected` lists the regions the guest should have (from its domain XML: one per
    /// NUMA cell or one for main memory, one per memory device, with the backend id when it
    /// is known). Each is matched to a `-object memory-backend-*` of QEMU's command line (by
    /// id, else by size), then to a shared file mapping in QEMU's memory map of that size
    /// and kind; regions not on the command line (hot-plugged) are matched to a free shared
    /// mapping of their size. With `expected` empty, every memory backend on the command line
    /// is opened except ivshmem's. Equal-sized regions without ids are paired in address order.
    ///
    /// The guest is mapped whole or not at all: one anonymous, private or missing backend
    /// makes it unmappable, with the reason.
    public func openRAMRegions(expecting expected: [ExpectedRegion] = [],
                               access: BackendAccess = .readOnly) throws(UnmappableReason) -> [GuestRegion] {
        let backends = QEMUCommandLine.memoryBackends(arguments: try commandLine())
        let plan = try GuestRAMPlan.match(backends: backends, expected: expected, mappings: try mappings())
        var regions: [GuestRegion] = []
        for (id, mapping) in plan {
            let regionPidfd: OwnedDescriptor
            do { regionPidfd = try pidfd.duplicate("dup pidfd") } catch { throw UnmappableReason(error) }
            do {
                regions.append(try GuestRegion(mapping: mapping, of: pid, backendID: id, access: access, processDescriptor: regionPidfd))
            } catch {
                if hasExited { throw .processGone }
                switch error {
                case .system(let system) where system.errno == .noSuchFileOrDirectory || system.errno == .noSuchProcess:
                    throw .backendNotFound(backend: id, size: Int(mapping.length))
                case .system(let system): throw UnmappableReason(system)
                case .identityMismatch, .notRegularFile, .truncated, .sizeChanged:
                    throw .backendNotFound(backend: id, size: Int(mapping.length))
                case .processExited: throw .processGone
                case .notWritable: throw .failed(SystemError(errno: .badFileDescriptor, operation: error.description))  // Opening never throws it.
                }
            }
        }
        guard !hasExited else { throw .processGone }
        return regions
    }
}

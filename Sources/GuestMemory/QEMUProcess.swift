#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A QEMU process held by a pidfd, so that its pid cannot be recycled under us: everything
/// read from `/proc/PID` is trusted only if the pidfd shows the process alive afterwards.
///
/// The pidfd (`descriptor`) turns readable when the process exits; the daemon can poll or
/// epoll it to release a dead guest's backends even when libvirtd is down.
public struct QEMUProcess: ~Copyable, Sendable {
    public let pid: pid_t
    /// The pidfd; owned by this value and closed with it.
    public let descriptor: Int32

    /// Opens a pidfd for `pid`.
    public init(pid: pid_t) throws(SystemError) {
        self.pid = pid
        self.descriptor = try retryingInterrupts("pidfd_open \(pid)") { LinuxCalls.pidfdOpen(pid, 0) }
    }

    deinit { close(descriptor) }

    /// Finds the QEMU of a libvirt guest from libvirt's pid file (`RUN/NAME.pid`) and checks
    /// that the process's command line is that guest's (`-name guest=NAME` and `-uuid UUID`).
    public static func libvirtGuest(
        name: String, uuid: UUID, runDirectory: String = "/run/libvirt/qemu"
    ) throws(UnmappableReason) -> QEMUProcess {
        let pidFile = "\(runDirectory)/\(name).pid"
        let text: String
        do { text = try readProcFile(pidFile) } catch {
            throw error.errno == ENOENT ? .processGone : UnmappableReason(error)
        }
        guard let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0 else {
            throw .processGone
        }
        let process: QEMUProcess
        do { process = try QEMUProcess(pid: pid) } catch {
            throw error.errno == ESRCH ? .processGone : UnmappableReason(error)
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
    public var hasExited: Bool { Self.hasExited(pidfd: descriptor) }

    static func hasExited(pidfd: Int32) -> Bool {
        var entry = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
        while true {
            let ready = poll(&entry, 1, 0)
            if ready >= 0 { return ready > 0 }
            if errno != EINTR { return true }
        }
    }

    /// The process's arguments (`/proc/PID/cmdline`).
    public func commandLine() throws(UnmappableReason) -> [String] {
        try whileAlive { () throws(SystemError) in
            QEMUCommandLine.arguments(cmdline: try readProcBytes("/proc/\(pid)/cmdline"))
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
            throw hasExited || error.errno == ENOENT || error.errno == ESRCH ? .processGone : UnmappableReason(error)
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
            let pidfd = fcntl(descriptor, F_DUPFD_CLOEXEC, 0)
            guard pidfd >= 0 else { throw UnmappableReason(SystemError("dup pidfd")) }
            do {
                regions.append(try GuestRegion(mapping: mapping, of: pid, backendID: id, access: access, processDescriptor: pidfd))
            } catch {
                if hasExited { throw .processGone }
                switch error {
                case .system(let system) where system.errno == ENOENT || system.errno == ESRCH:
                    throw .backendNotFound(backend: id, size: Int(mapping.length))
                case .system(let system): throw UnmappableReason(system)
                case .identityMismatch, .notRegularFile, .truncated, .sizeChanged:
                    throw .backendNotFound(backend: id, size: Int(mapping.length))
                case .processExited: throw .processGone
                case .notWritable: throw .failed(SystemError(errno: EBADF, operation: error.description))  // Opening never throws it.
                }
            }
        }
        guard !hasExited else { throw .processGone }
        return regions
    }
}

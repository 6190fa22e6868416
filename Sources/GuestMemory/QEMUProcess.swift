import Foundation
import Glibc
import LinuxSystem

/// A QEMU process held by a pidfd, so that its pid cannot be recycled under us: everything
/// read from `/proc/PID` is trusted only if the pidfd shows the process alive afterwards.
///
/// The pidfd turns readable when the process exits (``hasExited``), which tells a dead
/// guest's backends to be released even when libvirtd is down. Each region opened through
/// the process gets a pidfd of its own (``openRAMRegions(expecting:access:)`` for shared
/// backends only, ``openRAM(expecting:access:)`` for private RAM too).
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

    /// Opens every RAM backend of the guest as a region, for callers that need shared memory
    /// (reclaim punches holes in the backend).
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
    /// makes it unmappable, with the reason (``UnmappableReason/anonymousRAM(backend:)``,
    /// ``UnmappableReason/privateRAM(backend:)``). ``openRAM(expecting:access:)`` opens
    /// private RAM too.
    public func openRAMRegions(expecting expected: [ExpectedRegion] = [],
                               access: BackendAccess = .readOnly) throws(UnmappableReason) -> [GuestRegion] {
        let backends = QEMUCommandLine.memoryBackends(arguments: try commandLine())
        let plan = try GuestRAMPlan.match(backends: backends, expected: expected, mappings: try mappings())
        var regions: [GuestRegion] = []
        for (id, mapping) in plan { regions.append(try openShared(mapping, backendID: id, access: access)) }
        guard !hasExited else { throw .processGone }
        return regions
    }

    /// Where the guest's RAM is: for each region, the addresses of this process that hold
    /// it, and whether they are a shared backend (opened as a ``GuestRegion``) or private
    /// memory of the process (read in place as a ``PrivateGuestRegion``). Matching as in
    /// ``openRAMRegions(expecting:access:)``, except that a private backend (memory-backend-ram,
    /// `share=off`) is matched to private memory of its size: an anonymous area, or a private
    /// mapping of its file. Reads the command line and the maps; opens nothing.
    ///
    /// - Throws: ``UnmappableReason/ambiguousPrivateRAM(backend:size:candidates:)`` when QEMU
    ///   has more private areas of a region's size than the guest has such regions (which
    ///   is RAM cannot be told); ``UnmappableReason/backendNotFound(backend:size:)`` when a
    ///   region has no mapping; ``UnmappableReason/processGone``.
    public func planRAM(expecting expected: [ExpectedRegion] = []) throws(UnmappableReason) -> [RAMPlanEntry] {
        let backends = QEMUCommandLine.memoryBackends(arguments: try commandLine())
        let plan = try GuestRAMPlan.plan(backends: backends, expected: expected, mappings: try mappings(), privateMemory: true)
        return plan.map { RAMPlanEntry(backendID: $0.id, pid: pid, mapping: $0.mapping, placement: $0.placement) }
    }

    /// Opens every RAM region of the guest, shared or private, following ``planRAM(expecting:)``.
    /// Shared regions are opened with `access`; private ones can only be read. Each region
    /// gets a pidfd of this process of its own, so it is of the process whose maps were read.
    ///
    /// The guest is opened whole or not at all.
    public func openRAM(expecting expected: [ExpectedRegion] = [],
                        access: BackendAccess = .readOnly) throws(UnmappableReason) -> [GuestRAMRegion] {
        var regions: [GuestRAMRegion] = []
        for entry in try planRAM(expecting: expected) {
            switch entry.placement {
            case .shared: regions.append(.shared(try openShared(entry.mapping, backendID: entry.backendID, access: access)))
            case .privateMemory: regions.append(.private(try openPrivate(entry.mapping, backendID: entry.backendID)))
            }
        }
        guard !hasExited else { throw .processGone }
        return regions
    }

    private func regionPidfd() throws(UnmappableReason) -> OwnedDescriptor {
        do { return try pidfd.duplicate("dup pidfd") } catch { throw UnmappableReason(error) }
    }

    private func openShared(_ mapping: MemoryMapping, backendID id: String, access: BackendAccess) throws(UnmappableReason) -> GuestRegion {
        let descriptor = try regionPidfd()
        do {
            return try GuestRegion(mapping: mapping, of: pid, backendID: id, access: access, processDescriptor: descriptor)
        } catch {
            if hasExited { throw .processGone }
            switch error {
            case .system(let system) where system.errno == .noSuchFileOrDirectory || system.errno == .noSuchProcess:
                throw .backendNotFound(backend: id, size: Int(mapping.length))
            case .system(let system): throw UnmappableReason(system)
            case .identityMismatch, .notRegularFile, .truncated, .sizeChanged:
                throw .backendNotFound(backend: id, size: Int(mapping.length))
            case .processExited: throw .processGone
            case .notWritable, .unmapped, .pagemap:  // Opening never throws these.
                throw .failed(SystemError(errno: .badFileDescriptor, operation: error.description))
            }
        }
    }

    private func openPrivate(_ mapping: MemoryMapping, backendID id: String) throws(UnmappableReason) -> PrivateGuestRegion {
        let descriptor = try regionPidfd()
        do {
            return try PrivateGuestRegion(mapping: mapping, of: pid, backendID: id, processDescriptor: descriptor)
        } catch {
            if hasExited { throw .processGone }
            switch error {
            case .processExited: throw .processGone
            case .system(let system): throw UnmappableReason(system)
            default: throw .failed(SystemError(errno: .badFileDescriptor, operation: error.description))  // Opening throws no other.
            }
        }
    }
}

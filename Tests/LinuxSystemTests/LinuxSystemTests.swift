import Glibc
import LinuxSystem
import Testing

@Suite("Errno first, one formatting") struct SystemErrorTests {
    @Test func errnoIsReadBeforeTheMessageIsBuilt() {
        func clobbering(_ text: String) -> String {
            Glibc.errno = EBADF
            return text
        }
        Glibc.errno = ENOENT
        let error = SystemError(clobbering("open /nowhere"))
        #expect(error.errno == .noSuchFileOrDirectory)
        #expect(error.operation == "open /nowhere")
    }

    @Test func formatsAsOperationStrerrorAndNumber() {
        let error = SystemError(errno: .noSuchFileOrDirectory, operation: "open /nowhere")
        #expect(error.description == "open /nowhere: No such file or directory (errno 2)")
    }

    @Test func retriesInterruptsAndThrowsAnythingElse() {
        var calls = 0
        let result = try? retryingInterrupts("call") { () -> Int32 in
            calls += 1
            if calls < 3 {
                Glibc.errno = EINTR
                return -1
            }
            return 7
        }
        #expect(result == 7 && calls == 3)
        #expect(throws: SystemError(errno: .permissionDenied, operation: "call")) {
            try retryingInterrupts("call") { () -> Int32 in
                Glibc.errno = EACCES
                return -1
            }
        }
    }
}

@Suite("Owners of descriptors and mappings") struct OwnerTests {
    func isOpen(_ descriptor: FileDescriptor) -> Bool { fcntl(descriptor.rawValue, F_GETFD) != -1 }

    @Test func closesWhenDroppedOrClosedAndNotWhenReleased() throws {
        var raw: FileDescriptor
        do {
            let owner = try OwnedDescriptor.open("/proc/self/status", .readOnly)
            raw = owner.descriptor
            #expect(isOpen(raw) && fcntl(raw.rawValue, F_GETFD) & FD_CLOEXEC != 0)
        }
        #expect(!isOpen(raw))

        let closed = try OwnedDescriptor.open("/proc/self/status", .readOnly)
        raw = closed.descriptor
        closed.close()
        #expect(!isOpen(raw))

        let released = try OwnedDescriptor.open("/proc/self/status", .readOnly).release()
        #expect(isOpen(released))
        _ = Glibc.close(released.rawValue)
    }

    @Test func duplicatesCloseOnExec() throws {
        let owner = try OwnedDescriptor.open("/proc/self/status", .readOnly)
        let copy = try owner.duplicate()
        #expect(copy.descriptor != owner.descriptor)
        #expect(fcntl(copy.descriptor.rawValue, F_GETFD) & FD_CLOEXEC != 0)
    }

    @Test func opensRelativeToADirectory() throws {
        let directory = try OwnedDescriptor.open("/proc/self", .readOnly, options: .directory)
        let status = try OwnedDescriptor.open("status", .readOnly, relativeTo: directory.descriptor)
        #expect(String(decoding: try status.readToEnd("read status"), as: UTF8.self).hasPrefix("Name:"))
        #expect(throws: SystemError(errno: .noSuchFileOrDirectory, operation: "open /proc/self/nothing")) {
            _ = try OwnedDescriptor.open("nothing", .readOnly, relativeTo: directory.descriptor, operation: "open /proc/self/nothing")
        }
    }

    @Test func unmapsWhenDropped() throws {
        var template = Array("/tmp/samepage-mapping-XXXXXX".utf8CString)
        let raw = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        try #require(raw >= 0)
        let file = OwnedDescriptor(taking: FileDescriptor(rawValue: raw))
        _ = template.withUnsafeBufferPointer { unlink($0.baseAddress!) }
        let size = 4 * Int(getpagesize())
        #expect(ftruncate(file.descriptor.rawValue, off_t(size)) == 0)
        var vector = [UInt8](repeating: 0, count: 4)
        let address: UnsafeMutableRawPointer
        do {
            let mapping = try OwnedMapping(size: size, protection: PROT_READ, flags: MAP_SHARED, of: file.descriptor, at: 0, "mmap")
            address = mapping.address
            #expect(mincore(address, size, &vector) == 0)
        }
        #expect(mincore(address, size, &vector) == -1 && errno == ENOMEM)
    }
}

@Suite("One whole-file reader") struct WholeFileTests {
    @Test func readsAProcFileWhoseSizeIsZero() throws {
        var status = stat()
        #expect(stat("/proc/self/maps", &status) == 0 && status.st_size == 0)
        let maps = String(decoding: try readWholeFile("/proc/self/maps"), as: UTF8.self)
        #expect(maps.hasSuffix("\n") && maps.contains("[stack]"))
    }

    @Test func stopsAtTheLimit() throws {
        #expect(try readWholeFile("/proc/self/maps", limit: 10).count == 10)
        #expect(try readWholeFile("/proc/self/maps", limit: 0).isEmpty)
    }

    @Test func namesTheFileThatCannotBeOpened() {
        #expect(throws: SystemError(errno: .noSuchFileOrDirectory, operation: "open /proc/self/nothing")) {
            try readWholeFile("/proc/self/nothing")
        }
    }
}

@Suite("File identity") struct FileIdentityTests {
    @Test func describesAsTheMapsFileDoes() {
        #expect(FileIdentity(deviceMajor: 0xfe, deviceMinor: 1, inode: 1_180_321).description == "fe:01 1180321")
        #expect(FileIdentity(deviceMajor: 0x103, deviceMinor: 0x2a, inode: 7).description == "103:2a 7")
    }

    @Test func decodesStatAsTheMapsFileWritesIt() throws {
        var status = stat()
        #expect(stat("/proc/self/exe", &status) == 0)
        let identity = FileIdentity(status)
        let maps = String(decoding: try readWholeFile("/proc/self/maps"), as: UTF8.self)
        let fields = maps.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true) }
        #expect(fields.contains { $0.count >= 5 && "\($0[3]) \($0[4])" == identity.description })
    }
}

@Suite("The thread's CPU clock") struct ThreadCPUTimeTests {
    @Test func countsWorkNotSleep() throws {
        let start = try threadCPUTime()
        // Work until the thread has used 20 ms of CPU (on a loaded host that takes longer
        // than 20 ms of wall time; the deadline only keeps a broken clock from hanging).
        let deadline = ContinuousClock.now + .seconds(20)
        var spins: UInt64 = 0
        while try threadCPUTime() - start < .milliseconds(20), ContinuousClock.now < deadline {
            spins &+= 1
        }
        let worked = try threadCPUTime() - start
        #expect(worked >= .milliseconds(20), "\(spins) spins")

        // Asleep, the thread uses (next to) none.
        let beforeSleep = try threadCPUTime()
        usleep(300_000)
        #expect(try threadCPUTime() - beforeSleep < .milliseconds(100))
    }
}

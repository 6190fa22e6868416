import Glibc
import Foundation
@testable import GuestMemory
import Testing

/// A fake `/proc` in a temporary directory: `ROOT/PID/fd/N` symlinks and a `ROOT/PID/stat`.
final class FakeProcRoot {
    let path: String

    init() throws {
        path = "/tmp/samepage-proc-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// A process with these descriptors (`[3: "/dev/vfio/7"]`) in state `state`.
    func addProcess(_ pid: pid_t, descriptors: [Int: String], state: String = "S", command: String = "qemu-system-x86") throws {
        let fd = "\(path)/\(pid)/fd"
        try FileManager.default.createDirectory(atPath: fd, withIntermediateDirectories: true)
        for (number, target) in descriptors {
            try FileManager.default.createSymbolicLink(atPath: "\(fd)/\(number)", withDestinationPath: target)
        }
        try "\(pid) (\(command)) \(state) 1 \(pid) \(pid) 0 -1 4194560 8022 0 0 0 12 5 0 0 20 0 6 0\n"
            .write(toFile: "\(path)/\(pid)/stat", atomically: false, encoding: .utf8)
    }
}

@Suite struct DMADevicesTests {
    @Test("VFIO, iommufd and vhost-vdpa nodes are DMA devices; other devices and look-alikes are not", arguments: [
        ("/dev/vfio/vfio", true), ("/dev/vfio/12", true), ("/dev/vfio/0", true), ("/dev/vfio/noiommu-0", true),
        ("/dev/vfio/devices/vfio0", true), ("/dev/iommu", true), ("/dev/vhost-vdpa-0", true), ("/dev/vhost-vdpa-17", true),
        ("/dev/vfio/12 (deleted)", true), ("/dev/iommu (deleted)", true), ("/dev/vhost-vdpa-3 (deleted)", true),
        ("/dev/vhost-net", false), ("/dev/vhost-vsock", false), ("/dev/vfio-foo", false), ("/dev/vfio", false),
        ("/dev/vfio/", false), ("/dev/null", false), ("/dev/kvm", false), ("socket:[123]", false),
        ("anon_inode:[eventfd]", false), ("anon_inode:[vfio-device]", false), ("/dev/iommufoo", false),
        ("/dev/iommu/1", false), ("/tmp/dev/vfio/1", false), ("/dev/vhost-vdpa-", false), ("/dev/vhost-vdpa-x", false),
        ("/dev/vhost-vdpa-1x", false), ("/memfd:pc.ram (deleted)", false), (" (deleted)", false), ("", false),
        ("dev/vfio/1", false), ("/dev/net/tun", false),
    ])
    func classifies(target: String, isDMA: Bool) {
        #expect(DMADevices.isDMADevice(linkTarget: target) == isDMA)
    }

    @Test("A fake /proc: each DMA device once, sorted; other descriptors are not reported")
    func fakeProcRoot() throws {
        let root = try FakeProcRoot()
        try root.addProcess(4242, descriptors: [
            0: "/dev/null", 3: "/dev/vfio/7", 4: "socket:[123]", 5: "/dev/vfio/vfio", 6: "/dev/vfio/7",
            7: "anon_inode:[eventfd]", 8: "/dev/vhost-vdpa-1 (deleted)", 9: "/dev/iommu", 10: "/dev/vhost-net",
            11: "/memfd:pc.ram (deleted)",
        ])
        try root.addProcess(4343, descriptors: [0: "/dev/null", 1: "socket:[9]", 2: "/dev/kvm"], command: "virtiofsd) S (x")
        #expect(try DMADevices.held(by: 4242, procRoot: root.path) == [
            "/dev/iommu", "/dev/vfio/7", "/dev/vfio/vfio", "/dev/vhost-vdpa-1 (deleted)",
        ])
        #expect(try DMADevices.held(by: 4343, procRoot: root.path) == [])
    }

    @Test("A process that is gone, a zombie, or whose state cannot be read is reported as exited (ESRCH)")
    func exitedProcessThrows() throws {
        let root = try FakeProcRoot()
        try root.addProcess(4242, descriptors: [3: "/dev/vfio/7"], state: "Z")
        try root.addProcess(4343, descriptors: [3: "/dev/null"], state: "X")
        try root.addProcess(4444, descriptors: [3: "/dev/null"])
        try FileManager.default.removeItem(atPath: "\(root.path)/4444/stat")
        for pid: pid_t in [4242, 4343, 4444, 4545] {
            let error = #expect(throws: SystemError.self) { try DMADevices.held(by: pid, procRoot: root.path) }
            #expect(error?.errno == .noSuchProcess, "pid \(pid)")
        }
    }

    @Test("This process: /dev/null it holds open is walked but not reported")
    func currentProcess() throws {
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        try #require(null >= 0)
        defer { close(null) }
        var targets: [String] = []
        try OpenDescriptors.forEachTarget(of: getpid()) { targets.append(String(decoding: $0, as: UTF8.self)) }
        #expect(targets.contains("/dev/null"))
        #expect(try DMADevices.held(by: getpid()) == [])
    }

    @Test("A real child that exited and was not yet reaped (a zombie) is reported as exited")
    func zombieChild() throws {
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { free(argv[0]) }
        var child: pid_t = 0
        try #require(posix_spawn(&child, "/bin/true", nil, nil, argv, environ) == 0)
        defer { var status: Int32 = 0; waitpid(child, &status, 0) }
        var zombie = false
        for _ in 0..<500 where !zombie {
            let stat = (try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8)) ?? ""
            zombie = stat.contains(") Z ")
            if !zombie { usleep(10_000) }
        }
        try #require(zombie)
        let error = #expect(throws: SystemError.self) { try DMADevices.held(by: child) }
        #expect(error?.errno == .noSuchProcess)
    }
}

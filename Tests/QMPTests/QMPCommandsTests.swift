import QMP
import Testing

/// The typed commands, each against a reply written by hand from QEMU's QAPI schema the way
/// QEMU 7.2 and 8.x print it (members in QDict's hash order, non-ASCII as `\uXXXX`).
@Suite("QMP typed commands", .serialized) struct QMPCommandsTests {
    /// A connection to a fake QEMU that answers each command, in order, with one of `replies`
    /// (the `return` value's JSON text), then `body`; returns the commands it was sent.
    @discardableResult
    private func withReplies(
        _ replies: [String], _ body: (inout QMPConnection) throws -> Void
    ) throws -> [FakeQMPServer.Request] {
        let server = try FakeQMPServer(FakeQMPServer.handshake + replies.map(FakeQMPServer.returning) + [.awaitHangUp])
        do {
            var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
            try body(&connection)
        }
        return Array(server.requests().dropFirst())
    }

    @Test("query-status: running and paused on 8.1, io-error on 7.2, no singlestep on 9.0, an unknown status kept")
    func queryStatus() throws {
        let requests = try withReplies([
            #"{"status": "running", "singlestep": false, "running": true}"#,
            #"{"status": "paused", "singlestep": false, "running": false}"#,
            #"{"status": "io-error", "singlestep": false, "running": false}"#,
            #"{"status": "finish-migrate", "running": false}"#,
            #"{"status": "hibernating", "running": false}"#,
        ]) { (connection: inout QMPConnection) throws in
            #expect(try connection.queryStatus() == QMPRunState(running: true, status: .running, singlestep: false))
            #expect(try connection.queryStatus() == QMPRunState(running: false, status: .paused, singlestep: false))
            #expect(try connection.queryStatus().status == .ioError)
            let migrating = try connection.queryStatus()
            #expect(migrating.status == .finishMigrate)
            #expect(migrating.singlestep == nil)
            let unknown = try connection.queryStatus().status
            #expect(unknown == .other("hibernating"))
            #expect(unknown.rawValue == "hibernating")
            #expect(QMPRunStatus.other("paused") == .paused)
        }
        #expect(requests.map(\.execute) == Array(repeating: "query-status", count: 5))
    }

    @Test("run statuses read and write QEMU's names", arguments: [
        ("running", QMPRunStatus.running), ("paused", .paused), ("inmigrate", .inmigrate), ("postmigrate", .postmigrate),
        ("prelaunch", .prelaunch), ("finish-migrate", .finishMigrate), ("restore-vm", .restoreVM),
        ("suspended", .suspended), ("watchdog", .watchdog), ("guest-panicked", .guestPanicked), ("io-error", .ioError),
        ("shutdown", .shutdown), ("save-vm", .saveVM), ("internal-error", .internalError), ("colo", .colo),
        ("debug", .debug),
    ])
    func runStatusNames(_ name: String, status: QMPRunStatus) {
        #expect(QMPRunStatus(rawValue: name) == status)
        #expect(status.rawValue == name)
    }

    @Test("stop and cont are sent as such; stop's STOP event is kept")
    func stopAndCont() throws {
        let server = try FakeQMPServer(
            FakeQMPServer.handshake + [
                .answer {
                    #"{"timestamp": {"seconds": 1732104000, "microseconds": 5}, "event": "STOP"}"# + "\r\n"
                        + FakeQMPServer.reply(#""return": {}"#, to: $0)
                },
                // A second stop on a paused guest: no event, and {}.
                FakeQMPServer.returning("{}"),
                .answer {
                    #"{"timestamp": {"seconds": 1732104002, "microseconds": 500000}, "event": "RESUME"}"# + "\r\n"
                        + FakeQMPServer.reply(#""return": {}"#, to: $0)
                },
                .awaitHangUp,
            ])
        do {
            var connection = try QMPConnection.connect(path: server.path, timeout: .seconds(5))
            try connection.stop()
            try connection.stop()
            #expect(connection.takeEvents() == [QMPEvent(name: "STOP", timestamp: QMPTimestamp(seconds: 1_732_104_000, microseconds: 5))])
            try connection.cont()
            let resume = try #require(connection.takeEvents().first)
            #expect(resume.name == "RESUME")
            #expect(resume.timestamp.sinceEpoch - QMPTimestamp(seconds: 1_732_104_000, microseconds: 5).sinceEpoch == .microseconds(2_499_995))
        }
        #expect(server.requests().dropFirst().map(\.execute) == ["stop", "stop", "cont"])
    }

    @Test("query-name with a name QEMU escaped, and without -name; query-uuid")
    func nameAndUUID() throws {
        try withReplies([
            #"{"name": "caf\u00E9-vm100"}"#,
            "{}",
            #"{"UUID": "8f4b6e0a-1c2d-4e3f-9a0b-7c6d5e4f3a2b"}"#,
        ]) { (connection: inout QMPConnection) throws in
            #expect(try connection.queryName() == "café-vm100")
            #expect(try connection.queryName() == nil)
            #expect(try connection.queryUUID() == "8f4b6e0a-1c2d-4e3f-9a0b-7c6d5e4f3a2b")
        }
    }

    @Test("query-memdev: libvirt's shared memfd pc.ram, and Proxmox's two private NUMA nodes on 7.2")
    func queryMemdev() throws {
        try withReplies([
            #"[{"dump": true, "prealloc": false, "share": true, "host-nodes": [], "id": "pc.ram", "size": 4294967296, "merge": true, "policy": "default", "reserve": true}]"#,
            #"[{"dump": true, "prealloc": false, "share": false, "host-nodes": [0], "id": "ram-node0", "size": 2147483648, "merge": true, "policy": "bind", "reserve": true}, {"dump": true, "prealloc": false, "share": false, "host-nodes": [1], "id": "ram-node1", "size": 2147483648, "merge": false, "policy": "bind", "reserve": true}]"#,
        ]) { (connection: inout QMPConnection) throws in
            #expect(try connection.queryMemdev() == [
                QMPMemoryBackend(
                    id: "pc.ram", size: 4 << 30, merge: true, dump: true, prealloc: false, share: true, reserve: true,
                    hostNodes: [], policy: "default")
            ])
            let nodes = try connection.queryMemdev()
            #expect(nodes.map(\.id) == ["ram-node0", "ram-node1"])
            #expect(nodes.map(\.merge) == [true, false])
            #expect(nodes.map(\.share) == [false, false])
            #expect(nodes.map(\.hostNodes) == [[0], [1]])
            #expect(nodes.map(\.size) == [2 << 30, 2 << 30])
        }
    }

    @Test("query-memdev with a backend without its size is a protocol violation")
    func queryMemdevMissingSize() throws {
        try withReplies([#"[{"dump": true, "prealloc": false, "share": true, "host-nodes": [], "id": "pc.ram", "merge": true, "policy": "default"}]"#]) { (connection: inout QMPConnection) throws in
            let error = #expect(throws: QMPError.self) { try connection.queryMemdev() }
            guard case .protocolViolation(_, let detail)? = error else {
                Issue.record("not a protocol violation: \(String(describing: error))")
                return
            }
            #expect(detail == #"query-memdev: a query-memdev backend has no "size""#)
        }
    }

    @Test("query-jobs: a running backup and a concluded mirror that failed")
    func queryJobs() throws {
        try withReplies([
            #"[{"current-progress": 1073741824, "status": "running", "total-progress": 34359738368, "type": "backup", "id": "backup0"}, {"current-progress": 524288, "status": "concluded", "total-progress": 10737418240, "type": "mirror", "id": "mirror-drive-virtio0", "error": "No space left on device"}]"#,
            "[]",
        ]) { (connection: inout QMPConnection) throws in
            let jobs = try connection.queryJobs()
            #expect(jobs == [
                QMPJob(id: "backup0", type: "backup", status: "running", currentProgress: 1 << 30, totalProgress: 32 << 30),
                QMPJob(
                    id: "mirror-drive-virtio0", type: "mirror", status: "concluded", currentProgress: 524_288,
                    totalProgress: 10 << 30, error: "No space left on device"),
            ])
            #expect(jobs.map(\.isActive) == [true, false])
            #expect(try connection.queryJobs().isEmpty)
        }
    }

    @Test("query-migrate: never migrated ({}), active, completed")
    func queryMigrate() throws {
        try withReplies([
            "{}",
            #"{"expected-downtime": 300, "status": "active", "setup-time": 3, "total-time": 1520, "ram": {"total": 4295827456, "postcopy-requests": 0, "dirty-sync-count": 1, "multifd-bytes": 0, "pages-per-second": 32000, "downtime-bytes": 0, "page-size": 4096, "remaining": 2971418624, "postcopy-bytes": 0, "mbps": 1000.5, "transferred": 1324408832, "dirty-sync-missed-zero-copy": 0, "precopy-bytes": 1324408832, "duplicate": 120, "dirty-pages-rate": 0, "skipped": 0, "normal-bytes": 1322123264, "normal": 322784}}"#,
            #"{"status": "completed", "setup-time": 4, "downtime": 42, "total-time": 8123, "ram": {"total": 4295827456, "mbps": 4194.3, "transferred": 4281139200}}"#,
        ]) { (connection: inout QMPConnection) throws in
            let never = try connection.queryMigrate()
            #expect(never == QMPMigration(status: .none))
            #expect(!never.status.isInProgress)
            let active = try connection.queryMigrate()
            #expect(active == QMPMigration(status: .active, totalTime: .milliseconds(1520)))
            #expect(active.status.isInProgress)
            let completed = try connection.queryMigrate()
            #expect(completed == QMPMigration(status: .completed, totalTime: .milliseconds(8123), downtime: .milliseconds(42)))
            #expect(!completed.status.isInProgress)
            #expect(QMPMigrationStatus(rawValue: "postcopy-active").isInProgress)
        }
    }

    /// A q35 guest on QEMU 8.1: host bridge, VGA, a PCIe root port with virtio-net behind it,
    /// a passed-through GPU, and the ICH9 functions at 1f.
    private static let q35PCI = #"""
        [{"bus": 0, "devices": [{"irq_pin": 0, "bus": 0, "qdev_id": "", "slot": 0, "class_info": {"class": 1536, "desc": "Host bridge"}, "id": {"device": 10688, "subsystem-vendor": 6900, "vendor": 32902, "subsystem": 4352}, "function": 0, "regions": []}, {"irq_pin": 0, "bus": 0, "qdev_id": "", "slot": 1, "class_info": {"class": 768, "desc": "VGA controller"}, "id": {"device": 4369, "subsystem-vendor": 6900, "vendor": 4660, "subsystem": 4352}, "function": 0, "regions": [{"prefetch": true, "mem_type_64": false, "bar": 0, "size": 16777216, "address": 4244635648, "type": "memory"}, {"prefetch": false, "mem_type_64": false, "bar": 2, "size": 4096, "address": 4273958912, "type": "memory"}, {"prefetch": false, "mem_type_64": false, "bar": 6, "size": 65536, "address": 18446744073709551615, "type": "memory"}]}, {"irq_pin": 1, "bus": 0, "qdev_id": "pci.1", "irq": 10, "slot": 2, "class_info": {"class": 1540, "desc": "PCI bridge"}, "id": {"device": 12, "subsystem-vendor": 0, "vendor": 6966, "subsystem": 0}, "function": 0, "regions": [{"prefetch": false, "mem_type_64": false, "bar": 0, "size": 4096, "address": 4273963008, "type": "memory"}], "pci_bridge": {"bus": {"number": 1, "secondary": 1, "subordinate": 1, "io_range": {"limit": 61439, "base": 57344}, "prefetchable_range": {"limit": 34361835519, "base": 34359738368}, "memory_range": {"limit": 4271898623, "base": 4269801472}}, "devices": [{"irq_pin": 1, "bus": 1, "qdev_id": "net0", "irq": 10, "slot": 0, "class_info": {"class": 512, "desc": "Ethernet controller"}, "id": {"device": 4161, "subsystem-vendor": 6900, "vendor": 6900, "subsystem": 4352}, "function": 0, "regions": [{"prefetch": false, "mem_type_64": false, "bar": 1, "size": 4096, "address": 4269801472, "type": "memory"}, {"prefetch": true, "mem_type_64": true, "bar": 4, "size": 16384, "address": 34359738368, "type": "memory"}]}]}}, {"irq_pin": 1, "bus": 0, "qdev_id": "hostpci0", "irq": 11, "slot": 16, "class_info": {"class": 770, "desc": "3D controller"}, "id": {"device": 7864, "subsystem-vendor": 4318, "vendor": 4318, "subsystem": 4770}, "function": 0, "regions": [{"prefetch": false, "mem_type_64": false, "bar": 0, "size": 16777216, "address": 4227858432, "type": "memory"}, {"prefetch": true, "mem_type_64": true, "bar": 1, "size": 17179869184, "address": 51539607552, "type": "memory"}]}, {"irq_pin": 0, "bus": 0, "qdev_id": "", "slot": 31, "class_info": {"class": 1537, "desc": "ISA bridge"}, "id": {"device": 10520, "subsystem-vendor": 6900, "vendor": 32902, "subsystem": 4352}, "function": 0, "regions": []}, {"irq_pin": 1, "bus": 0, "qdev_id": "", "irq": 10, "slot": 31, "class_info": {"class": 262, "desc": "SATA controller"}, "id": {"device": 10530, "subsystem-vendor": 6900, "vendor": 32902, "subsystem": 4352}, "function": 2, "regions": [{"bar": 4, "size": 32, "address": 49280, "type": "io"}, {"prefetch": false, "mem_type_64": false, "bar": 5, "size": 4096, "address": 4273967104, "type": "memory"}]}, {"irq_pin": 1, "bus": 0, "qdev_id": "", "irq": 10, "slot": 31, "class_info": {"class": 3077, "desc": "SMBus"}, "id": {"device": 10544, "subsystem-vendor": 6900, "vendor": 32902, "subsystem": 4352}, "function": 3, "regions": [{"bar": 4, "size": 64, "address": 1792, "type": "io"}]}]}]
        """#

    @Test("query-pci of a q35 guest, flattened across its root port, bridge before what is behind it")
    func queryPCI() throws {
        try withReplies([Self.q35PCI]) { (connection: inout QMPConnection) throws in
            let devices = try connection.queryPCI()
            #expect(devices.map(\.address) == ["00:00.0", "00:01.0", "00:02.0", "01:00.0", "00:10.0", "00:1f.0", "00:1f.2", "00:1f.3"])
            #expect(devices.map(\.qdevID) == ["", "", "pci.1", "net0", "hostpci0", "", "", ""])
            #expect(devices.map(\.secondaryBus) == [nil, nil, 1, nil, nil, nil, nil, nil])
            let nic = devices[3]
            #expect(nic.vendorID == 0x1af4)
            #expect(nic.deviceID == 0x1041)
            #expect(nic.classCode == 0x0200)
            #expect(nic.classDescription == "Ethernet controller")
            #expect(nic.regions == [
                QMPPCIRegion(bar: 1, isIO: false, address: 0xFE80_0000, size: 4096, prefetchable: false, is64Bit: false),
                QMPPCIRegion(bar: 4, isIO: false, address: 0x8_0000_0000, size: 16384, prefetchable: true, is64Bit: true),
            ])
            let gpu = devices[4]
            #expect((gpu.vendorID, gpu.deviceID, gpu.classCode) == (0x10de, 0x1eb8, 0x0302))
            // The VGA's ROM BAR, not mapped: QEMU's all-ones address.
            #expect(devices[1].regions.last == QMPPCIRegion(bar: 6, isIO: false, address: .max, size: 65536, prefetchable: false, is64Bit: false))
            #expect(devices[6].regions.first == QMPPCIRegion(bar: 4, isIO: true, address: 0xC080, size: 32))
        }
    }

    @Test("qom-list of /machine/peripheral names each device's QOM type; qom-get returns the value")
    func qom() throws {
        let requests = try withReplies([
            #"[{"name": "type", "type": "string"}, {"name": "net0", "type": "child<virtio-net-pci>"}, {"name": "hostpci0", "type": "child<vfio-pci>"}, {"name": "scsihw0", "type": "child<virtio-scsi-pci>"}]"#,
            "true",
            #"[{"name": "type", "type": "string"}, {"name": "memdev", "type": "link<memory-backend>"}]"#,
        ]) { (connection: inout QMPConnection) throws in
            let properties = try connection.qomList(path: "/machine/peripheral")
            #expect(properties.map(\.name) == ["type", "net0", "hostpci0", "scsihw0"])
            #expect(properties.map(\.childType) == [nil, "virtio-net-pci", "vfio-pci", "virtio-scsi-pci"])
            #expect(try connection.qomGet(path: "/objects/pc.ram", property: "merge") == .bool(true))
            #expect(try connection.qomList(path: "/machine/peripheral/dimm0").last?.linkType == "memory-backend")
        }
        #expect(requests.map(\.execute) == ["qom-list", "qom-get", "qom-list"])
        #expect(requests[0].stringArguments == ["path": "/machine/peripheral"])
        #expect(requests[1].stringArguments == ["path": "/objects/pc.ram", "property": "merge"])
    }
}

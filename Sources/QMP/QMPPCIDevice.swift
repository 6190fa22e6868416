/// One PCI function of `query-pci` (QAPI's `PciDeviceInfo`), wherever it sits: on a root
/// bus or behind any number of bridges and PCIe root ports.
///
/// `query-pci` nests a bridge's devices inside the bridge (`pci_bridge.devices`);
/// ``QMPConnection/queryPCI(timeout:)`` flattens them, bridge first and then what is behind
/// it, so that a caller looking for, say, a `vfio-pci` function (whose DMA pins guest RAM)
/// need not walk the tree.
public struct QMPPCIDevice: Sendable, Hashable {
    /// The bus number the function is on (a bridge's secondary bus for one behind it).
    public var bus: Int
    public var slot: Int
    public var function: Int
    /// The PCI class code, base class and subclass (`0x0200` is an Ethernet controller).
    public var classCode: Int
    /// QEMU's name of the class (`Ethernet controller`); nil for one QEMU has no name for.
    public var classDescription: String?
    public var vendorID: Int
    public var deviceID: Int
    /// The device's `id` on the command line (`net0`, `hostpci0`); empty when it has none.
    public var qdevID: String
    /// Its BARs.
    public var regions: [QMPPCIRegion]
    /// For a bridge, the bus number behind it; nil for any other function.
    public var secondaryBus: Int?

    public init(
        bus: Int, slot: Int, function: Int, classCode: Int, classDescription: String?, vendorID: Int, deviceID: Int,
        qdevID: String, regions: [QMPPCIRegion] = [], secondaryBus: Int? = nil
    ) {
        self.bus = bus
        self.slot = slot
        self.function = function
        self.classCode = classCode
        self.classDescription = classDescription
        self.vendorID = vendorID
        self.deviceID = deviceID
        self.qdevID = qdevID
        self.regions = regions
        self.secondaryBus = secondaryBus
    }

    /// `bus:slot.function` in hexadecimal, as `lspci` writes it: `00:1f.2`.
    public var address: String {
        func hex(_ value: Int, _ digits: Int) -> String {
            let text = String(value, radix: 16)
            return String(repeating: "0", count: max(0, digits - text.count)) + text
        }
        return "\(hex(bus, 2)):\(hex(slot, 2)).\(hex(function, 1))"
    }

    /// The functions of a `query-pci` reply, depth-first: each bridge before the functions
    /// behind it.
    static func flattening(reply: QMPValue) throws(QMPReplyError) -> [QMPPCIDevice] {
        var devices: [QMPPCIDevice] = []
        for bus in try replyObjects(reply, "a query-pci bus") {
            try append(bus.objects("devices", "a query-pci device"), to: &devices)
        }
        return devices
    }

    private static func append(_ entries: [QMPReplyReader], to devices: inout [QMPPCIDevice]) throws(QMPReplyError) {
        for reader in entries {
            let classInfo = try reader.object("class_info", "a query-pci device's class_info")
            let id = try reader.object("id", "a query-pci device's id")
            let bridge = try reader.optionalObject("pci_bridge", "a query-pci bridge")
            let secondary = try bridge?.optionalObject("bus", "a query-pci bridge's bus")?.optionalInt("secondary")
            devices.append(
                QMPPCIDevice(
                    bus: Int(try reader.int("bus")), slot: Int(try reader.int("slot")), function: Int(try reader.int("function")),
                    classCode: Int(try classInfo.int("class")), classDescription: try classInfo.optionalString("desc"),
                    vendorID: Int(try id.int("vendor")), deviceID: Int(try id.int("device")),
                    qdevID: try reader.string("qdev_id"),
                    regions: try reader.objects("regions", "a query-pci region").map(QMPPCIRegion.init),
                    secondaryBus: secondary.map(Int.init)))
            // A bridge with nothing behind it may leave `devices` out.
            if let bridge, bridge.members["devices"] != nil {
                try append(bridge.objects("devices", "a query-pci device behind a bridge"), to: &devices)
            }
        }
    }
}

/// One BAR of a PCI function (QAPI's `PciMemoryRegion`).
public struct QMPPCIRegion: Sendable, Hashable {
    /// The BAR's index, 0 to 5 (6 for the expansion ROM).
    public var bar: Int
    /// Whether it is I/O port space (`io`) rather than memory (`memory`).
    public var isIO: Bool
    /// Where the guest mapped it; `0xffffffffffffffff` when it is not mapped.
    public var address: UInt64
    public var size: UInt64
    /// For a memory BAR, whether it is prefetchable; nil for I/O.
    public var prefetchable: Bool?
    /// For a memory BAR, whether it is 64-bit; nil for I/O.
    public var is64Bit: Bool?

    public init(bar: Int, isIO: Bool, address: UInt64, size: UInt64, prefetchable: Bool? = nil, is64Bit: Bool? = nil) {
        self.bar = bar
        self.isIO = isIO
        self.address = address
        self.size = size
        self.prefetchable = prefetchable
        self.is64Bit = is64Bit
    }

    init(_ reader: QMPReplyReader) throws(QMPReplyError) {
        self.init(
            bar: Int(try reader.int("bar")), isIO: try reader.string("type") == "io", address: try reader.uint("address"),
            size: try reader.uint("size"), prefetchable: try reader.optionalBool("prefetch"),
            is64Bit: try reader.optionalBool("mem_type_64"))
    }
}

import Foundation
#if canImport(FoundationXML)
import FoundationXML  // XMLParser
#endif

// Reading a DomainDefinition from libvirt's domain XML (`virsh dumpxml`): the one place that
// knows the XML's element names, units and namespaces; the types of DomainDefinition.swift know none.

/// Domain XML that could not be understood.
public struct DomainDefinitionError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var description: String { "domain XML: \(message)" }
}

extension DomainDefinition {
    /// Parses a domain's XML as `virsh dumpxml` prints it.
    public init(xml: String) throws(DomainDefinitionError) {
        // FoundationXML on Linux crashes (a null libxml2 document), rather than throwing, on
        // text libxml2 reads as empty: "" and anything that starts with NUL. NUL is no XML
        // character anywhere in a document.
        guard !xml.isEmpty, !xml.utf8.contains(0) else {
            throw DomainDefinitionError(message: "not well-formed: empty, or holds a NUL character")
        }
        let root = try DomainXMLElement.parse(xml)
        guard root.name == "domain" else {
            throw DomainDefinitionError(message: "no <domain> root element")
        }
        guard let name = root.child("name")?.text else { throw DomainDefinitionError(message: "no <name>") }
        guard let uuidText = root.child("uuid")?.text, let uuid = UUID(uuidString: uuidText) else {
            throw DomainDefinitionError(message: "no valid <uuid>")
        }
        guard let memory = root.child("memory"), let memoryKiB = try Self.kibibytes(memory.text, unit: memory["unit"]) else {
            throw DomainDefinitionError(message: "no <memory>")
        }
        self.name = name
        self.uuid = uuid
        self.type = root["type"] ?? ""
        self.memoryKiB = memoryKiB
        self.currentMemoryKiB = try root.child("currentMemory").flatMap { e throws(DomainDefinitionError) in
            try Self.kibibytes(e.text, unit: e["unit"])
        }
        self.memoryBacking = try Self.memoryBacking(root.child("memoryBacking"))
        self.launchSecurity = root.child("launchSecurity")?["type"]

        numaCells = []
        for cell in root.child("cpu")?.child("numa")?.children("cell") ?? [] {
            guard let id = cell["id"].flatMap(UInt32.init), let kib = try Self.kibibytes(cell["memory"], unit: cell["unit"]) else {
                throw DomainDefinitionError(message: "NUMA cell without id or memory")
            }
            numaCells.append(NUMACell(id: id, memoryKiB: kib, access: try Self.access(cell["memAccess"])))
        }

        memoryDevices = []
        hostDevices = []
        vdpaInterfaces = []
        nvmeDisks = []
        vdpaDisks = []
        vhostUserDevices = []
        sharedMemoryDevices = []
        virtiofsFilesystems = []
        memoryBalloon = nil
        for device in root.child("devices")?.elementChildren ?? [] {
            let alias = device.child("alias")?["name"]
            switch device.name {
            case "memory":
                guard let modelName = device["model"], let model = MemoryDevice.Model(rawValue: modelName) else {
                    throw DomainDefinitionError(message: "memory device with unknown model \(device["model"] ?? "none")")
                }
                let target = device.child("target")
                let source = device.child("source")
                guard let size = target?.child("size"), let sizeKiB = try Self.kibibytes(size.text, unit: size["unit"]) else {
                    throw DomainDefinitionError(message: "memory device \(alias ?? "") without a target size")
                }
                func kib(_ element: DomainXMLElement?) throws(DomainDefinitionError) -> UInt64? {
                    guard let element else { return nil }
                    return try Self.kibibytes(element.text, unit: element["unit"])
                }
                memoryDevices.append(MemoryDevice(
                    model: model, alias: alias, sizeKiB: sizeKiB,
                    node: target?.child("node")?.text.flatMap(UInt32.init),
                    access: try Self.access(device["access"]),
                    sourcePath: source?.child("path")?.text,
                    pageSizeKiB: try kib(source?.child("pagesize")),
                    requestedKiB: try kib(target?.child("requested")),
                    currentKiB: try kib(target?.child("current"))
                ))
            case "hostdev":
                hostDevices.append(HostDevice(type: device["type"] ?? "unknown", alias: alias))
            case "interface":
                let source = device.child("source")
                switch device["type"] {
                case "hostdev": hostDevices.append(HostDevice(type: "interface", alias: alias))
                case "vdpa": vdpaInterfaces.append(VDPAInterface(alias: alias, devicePath: source?["dev"]))
                case "vhostuser":
                    vhostUserDevices.append(VhostUserDevice(kind: .interface, alias: alias, socketPath: source?["path"], mode: source?["mode"]))
                default: break
                }
            case "disk":
                let source = device.child("source")
                switch device["type"] {
                case "vhostuser":
                    vhostUserDevices.append(VhostUserDevice(kind: .disk, alias: alias, socketPath: source?["path"], mode: source?["mode"]))
                case "nvme":
                    nvmeDisks.append(NVMeDisk(
                        alias: alias, pciAddress: source?.child("address").flatMap(Self.pciAddress),
                        namespace: source?["namespace"].flatMap { UInt32($0) }))
                case "vhostvdpa": vdpaDisks.append(VDPADisk(alias: alias, devicePath: source?["dev"]))
                default: break
                }
            case "shmem":
                let size = device.child("size")
                sharedMemoryDevices.append(SharedMemoryDevice(
                    name: device["name"] ?? "", model: device.child("model")?["type"],
                    sizeKiB: try size.flatMap { e throws(DomainDefinitionError) in try Self.kibibytes(e.text, unit: e["unit"]) },
                    alias: alias))
            case "memballoon":
                if let model = device["model"], model != "none" {
                    memoryBalloon = MemoryBalloon(model: model, freePageReporting: device["freePageReporting"] == "on")
                }
            case "filesystem" where device.child("driver")?["type"] == "virtiofs":
                let source = device.child("source")
                virtiofsFilesystems.append(VirtiofsFilesystem(
                    alias: alias, target: device.child("target")?["dir"],
                    sourceDirectory: source?["dir"], socketPath: source?["socket"]))
            default:
                break
            }
        }

        commandLineDevices = Self.commandLineDevices(
            root.elementChildren.filter { $0.isQEMU("commandline") }.flatMap { commandLine in
                commandLine.elementChildren.filter { $0.isQEMU("arg") }.map { $0["value"] ?? "" }
            })
        deviceOverrides = root.elementChildren.filter { $0.isQEMU("override") }.flatMap { override in
            override.elementChildren.filter { $0.isQEMU("device") }.map { $0["alias"] ?? "" }
        }
    }

    /// Options of `<qemu:commandline>` that add, change or map no device, object or memory;
    /// each takes one value.
    static let harmlessOptions: Set<String> = ["msg", "trace", "d", "D", "dfilter", "name", "sandbox"]

    /// Options that take a value, even one starting with `-` (QEMU takes the next argument).
    static let optionsWithValue = harmlessOptions.union([
        "device", "netdev", "object", "chardev", "drive", "blockdev", "numa", "mem-path", "fsdev", "virtfs",
        "set", "global", "machine", "M", "m", "smp", "cpu", "accel", "add-fd", "overcommit", "net", "nic",
    ])

    /// The arguments of a `<qemu:commandline>` that count as devices (`commandLineDevices`):
    /// each option (`-device X`, `-device=X`, `--device X`) with its value, and any stray
    /// argument that is no option's value (QEMU takes it for a disk image).
    static func commandLineDevices(_ arguments: [String]) -> [String] {
        var devices: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("-"), argument.count > 1 else {
                devices.append(argument)
                continue
            }
            var name = argument.dropFirst(argument.hasPrefix("--") ? 2 : 1)
            let inlineValue = name.firstIndex(of: "=")
            if let inlineValue { name = name[..<inlineValue] }
            var text = argument
            if inlineValue == nil, index < arguments.count,
               optionsWithValue.contains(String(name)) || !arguments[index].hasPrefix("-") {
                text += " " + arguments[index]
                index += 1
            }
            if !harmlessOptions.contains(String(name)) { devices.append(text) }
        }
        return devices
    }

    /// A libvirt PCI `<address domain= bus= slot= function=>` as `DDDD:BB:SS.F`; nil when
    /// incomplete.
    static func pciAddress(_ element: DomainXMLElement) -> String? {
        func number(_ attribute: String) -> UInt32? {
            guard let text = element[attribute] else { return nil }
            return text.hasPrefix("0x") ? UInt32(text.dropFirst(2), radix: 16) : UInt32(text)
        }
        guard let bus = number("bus"), let slot = number("slot"), let function = number("function") else { return nil }
        return String(format: "%04x:%02x:%02x.%x", number("domain") ?? 0, bus, slot, function)
    }

    static func memoryBacking(_ element: DomainXMLElement?) throws(DomainDefinitionError) -> MemoryBacking {
        guard let element else { return MemoryBacking() }
        var backing = MemoryBacking()
        if let type = element.child("source")?["type"] {
            guard let source = MemoryBacking.Source(rawValue: type) else {
                throw DomainDefinitionError(message: "unknown memoryBacking source \(type)")
            }
            backing.source = source
        }
        backing.access = try access(element.child("access")?["mode"])
        if let hugepages = element.child("hugepages") {
            backing.hugepages = true
            for page in hugepages.children("page") {
                guard let kib = try kibibytes(page["size"], unit: page["unit"]) else {
                    throw DomainDefinitionError(message: "hugepage without a size")
                }
                backing.hugepageSizes.append(.init(sizeKiB: kib, nodeset: page["nodeset"]))
            }
        }
        backing.locked = element.child("locked") != nil
        backing.preallocated = element.child("allocation")?["mode"] == "immediate"
        backing.discard = element.child("discard") != nil
        backing.noSharePages = element.child("nosharepages") != nil
        return backing
    }

    static func access(_ mode: String?) throws(DomainDefinitionError) -> MemoryBacking.Access? {
        guard let mode else { return nil }
        guard let access = MemoryBacking.Access(rawValue: mode) else {
            throw DomainDefinitionError(message: "unknown memory access mode \(mode)")
        }
        return access
    }

    /// Converts a libvirt scaled integer to KiB, rounding up, as libvirt does. The unit
    /// defaults to KiB; `KB`, `MB`... are powers of 1000, `k`/`KiB`, `M`/`MiB`... of 1024.
    static func kibibytes(_ value: String?, unit: String?) throws(DomainDefinitionError) -> UInt64? {
        guard let value = value?.trimmingCharacters(in: .whitespacesAndNewlines) else { return nil }
        guard let number = UInt64(value) else { throw DomainDefinitionError(message: "not a size: \(value)") }
        let unit = (unit ?? "KiB").lowercased()
        guard let multiplier = Self.bytes(per: unit) else { throw DomainDefinitionError(message: "unknown unit \(unit)") }
        let (bytes, overflow) = number.multipliedReportingOverflow(by: multiplier)
        guard !overflow else { throw DomainDefinitionError(message: "size overflows: \(value) \(unit)") }
        return bytes / 1024 + (bytes % 1024 == 0 ? 0 : 1)
    }

    /// The prefixes of libvirt's units, each the next power of 1000 or 1024: `k` the first,
    /// `e` the sixth.
    private static let unitPrefixes: [Character] = ["k", "m", "g", "t", "p", "e"]

    /// The bytes in one `unit` (lower-cased): `b` or `bytes`; a prefix and `b` (`kb`), a power
    /// of 1000; a prefix alone or with `ib` (`k`, `kib`), a power of 1024. Nil for another unit.
    static func bytes(per unit: String) -> UInt64? {
        if unit == "b" || unit == "bytes" { return 1 }
        guard let prefix = unit.first, let index = unitPrefixes.firstIndex(of: prefix) else { return nil }
        let power = index + 1
        switch unit.dropFirst() {
        case "b": return (0..<power).reduce(1) { product, _ in product * 1000 }
        case "", "ib": return 1 << (10 * power)
        default: return nil
        }
    }
}

extension DomainXMLElement {
    /// The namespace of libvirt's QEMU-specific elements (`<qemu:commandline>`,
    /// `<qemu:override>`).
    static let qemuNamespace = "http://libvirt.org/schemas/domain/qemu/1.0"

    /// Whether this is the QEMU-namespace element `localName`, whatever prefix the document
    /// binds the namespace to; or, in a document that forgot to declare it, spelled `qemu:…`.
    func isQEMU(_ localName: String) -> Bool {
        (uri == Self.qemuNamespace && self.localName == localName) || name == "qemu:\(localName)"
    }
}

/// An element of domain XML, read with Foundation's event-driven `XMLParser` into a small tree
/// of our own: FoundationXML's `XMLDocument` leaks every document it reads on Linux (about
/// 25 KB for a test guest's XML, found by fuzzing), and the agent reads every mapped guest's XML
/// again at each reconcile, so a daemon built on it grew by hundreds of megabytes a day.
final class DomainXMLElement {
    /// The qualified name as written (`qemu:commandline`), the local name and the namespace.
    let name: String
    let localName: String
    let uri: String?
    let attributes: [String: String]
    fileprivate(set) var elementChildren: [DomainXMLElement] = []
    fileprivate var ownText = ""

    init(name: String, localName: String, uri: String?, attributes: [String: String]) {
        self.name = name
        self.localName = localName
        self.uri = uri
        self.attributes = attributes
    }

    /// Parses `xml` into its root element.
    static func parse(_ xml: String) throws(DomainDefinitionError) -> DomainXMLElement {
        let parser = XMLParser(data: Data(xml.utf8))
        let builder = TreeBuilder()
        parser.delegate = builder
        parser.shouldProcessNamespaces = true
        parser.shouldResolveExternalEntities = false
        guard parser.parse(), let root = builder.root else {
            throw DomainDefinitionError(message: "not well-formed: \(parser.parserError.map { "\($0)" } ?? "no root element")")
        }
        return root
    }

    func children(_ name: String) -> [DomainXMLElement] { elementChildren.filter { $0.name == name } }
    func child(_ name: String) -> DomainXMLElement? { elementChildren.first { $0.name == name } }
    /// The text of the element and its descendants, trimmed.
    var text: String? { allText.trimmingCharacters(in: .whitespacesAndNewlines) }
    private var allText: String { elementChildren.reduce(ownText) { $0 + $1.allText } }
    subscript(_ attribute: String) -> String? { attributes[attribute] }

    private final class TreeBuilder: NSObject, XMLParserDelegate {
        var root: DomainXMLElement?
        private var open: [DomainXMLElement] = []

        func parser(
            _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
            attributes: [String: String] = [:]
        ) {
            let element = DomainXMLElement(
                name: qualifiedName ?? elementName, localName: elementName,
                uri: namespaceURI.flatMap { $0.isEmpty ? nil : $0 }, attributes: attributes)
            if let parent = open.last { parent.elementChildren.append(element) } else if root == nil { root = element }
            open.append(element)
        }

        func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
            _ = open.popLast()
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) { open.last?.ownText += string }

        func parser(_ parser: XMLParser, foundCDATA CDATABlock: Data) {
            open.last?.ownText += String(decoding: CDATABlock, as: UTF8.self)
        }
    }
}

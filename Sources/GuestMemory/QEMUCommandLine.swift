import Foundation

/// A `-object memory-backend-*` of a QEMU command line: one RAM backend of the guest.
public struct MemoryBackendObject: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        /// `memory-backend-ram`: private anonymous memory.
        case ram
        /// `memory-backend-memfd`: a memfd, shared unless `share=off`.
        case memfd
        /// `memory-backend-file`: a file at `mem-path` (or an unlinked one in that directory).
        case file
        case other(String)
    }

    /// The QOM id, such as `pc.ram`, `ram-node0` or `memdimm0`.
    public var id: String
    public var kind: Kind
    public var size: Int
    /// Whether QEMU maps it MAP_SHARED (QEMU's default: on for memfd, off otherwise).
    public var shared: Bool
    public var memPath: String?
    public var prealloc: Bool
    /// A memfd backend allocated from huge pages.
    public var hugetlb: Bool

    public init(id: String, kind: Kind, size: Int, shared: Bool, memPath: String? = nil,
                prealloc: Bool = false, hugetlb: Bool = false) {
        self.id = id
        self.kind = kind
        self.size = size
        self.shared = shared
        self.memPath = memPath
        self.prealloc = prealloc
        self.hugetlb = hugetlb
    }
}

/// Reading what matters to Samepage from a QEMU command line (`/proc/PID/cmdline`).
public enum QEMUCommandLine {
    /// The memory backends declared by `-object`, in either syntax libvirt uses: JSON
    /// (`{"qom-type":"memory-backend-memfd","id":"pc.ram","size":268435456}`, libvirt 7.9
    /// and later with QEMU 6.0 and later) or QemuOpts (`memory-backend-file,id=…,size=1G`).
    /// Backends hot-plugged later (QMP `object-add`) are not on the command line.
    public static func memoryBackends(arguments: [String]) -> [MemoryBackendObject] {
        zip(arguments, arguments.dropFirst()).compactMap { option, value in
            option == "-object" ? memoryBackend(objectArgument: value) : nil
        }
    }

    /// The Unix socket paths of the chardevs that vhost-user devices talk through: a
    /// `-chardev socket,id=ID,path=PATH` whose id a `-device vhost-user-*` (virtiofs, blk,
    /// net, ...) or a `-netdev vhost-user` names as its `chardev`. Both syntaxes libvirt
    /// writes are read (JSON for `-device`/`-netdev` with recent libvirt, QemuOpts otherwise).
    /// This is how the socket of a virtiofsd that libvirt starts itself is found: the domain
    /// XML does not show it.
    public static func vhostUserSocketPaths(arguments: [String]) -> Set<String> {
        var chardevPaths: [String: String] = [:]
        var vhostUserChardevs = Set<String>()
        for (option, value) in zip(arguments, arguments.dropFirst()) {
            let properties = value.hasPrefix("{") ? flatJSONProperties(value) : optsProperties(value)
            switch option {
            case "-chardev":
                if value.hasPrefix("{") {
                    // QMP's chardev-add shape: {"id":…,"backend":{"type":"socket","data":
                    // {"addr":{"type":"unix","data":{"path":…}}}}}.
                    if let (id, path) = jsonChardevSocketPath(value) { chardevPaths[id] = path }
                } else if properties[""] == "socket", let id = properties["id"], let path = properties["path"] {
                    chardevPaths[id] = path
                }
            case "-device":
                if let driver = properties["driver"] ?? properties[""], driver.hasPrefix("vhost-user"),
                   let chardev = properties["chardev"] {
                    vhostUserChardevs.insert(chardev)
                }
            case "-netdev":
                if properties["type"] ?? properties[""] == "vhost-user", let chardev = properties["chardev"] {
                    vhostUserChardevs.insert(chardev)
                }
            default:
                break
            }
        }
        return Set(vhostUserChardevs.compactMap { chardevPaths[$0] })
    }

    package static func jsonChardevSocketPath(_ text: String) -> (String, String)? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              let id = object["id"] as? String,
              let backend = object["backend"] as? [String: Any], backend["type"] as? String == "socket",
              let address = (backend["data"] as? [String: Any])?["addr"] as? [String: Any],
              address["type"] as? String == "unix",
              let path = (address["data"] as? [String: Any])?["path"] as? String
        else { return nil }
        return (id, path)
    }

    /// A JSON object's top-level strings (other members are left out).
    package static func flatJSONProperties(_ text: String) -> [String: String] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else { return [:] }
        return object.compactMapValues { $0 as? String }
    }

    /// Splits the NUL-separated contents of `/proc/PID/cmdline`.
    public static func arguments(cmdline bytes: [UInt8]) -> [String] {
        guard !bytes.isEmpty else { return [] }
        return bytes.split(separator: 0, omittingEmptySubsequences: false).dropLast(bytes.last == 0 ? 1 : 0)
            .map { String(decoding: $0, as: UTF8.self) }
    }

    static func memoryBackend(objectArgument value: String) -> MemoryBackendObject? {
        let properties = value.hasPrefix("{") ? jsonProperties(value) : optsProperties(value)
        guard let type = properties["qom-type"] ?? properties[""], type.hasPrefix("memory-backend-"),
              let id = properties["id"], let sizeText = properties["size"], let size = parseSize(sizeText)
        else { return nil }
        let kind: MemoryBackendObject.Kind
        switch type {
        case "memory-backend-ram": kind = .ram
        case "memory-backend-memfd": kind = .memfd
        case "memory-backend-file": kind = .file
        default: kind = .other(type)
        }
        return MemoryBackendObject(
            id: id, kind: kind, size: size,
            shared: properties["share"].flatMap(parseBool) ?? (kind == .memfd),
            memPath: properties["mem-path"],
            prealloc: properties["prealloc"].flatMap(parseBool) ?? false,
            hugetlb: properties["hugetlb"].flatMap(parseBool) ?? false)
    }

    /// The JSON members that matter, as strings in QemuOpts spelling.
    static func jsonProperties(_ text: String) -> [String: String] {
        struct Object: Decodable {
            var qomType: String, id: String?, size: UInt64?, share: Bool?, memPath: String?
            var prealloc: Bool?, hugetlb: Bool?
            enum CodingKeys: String, CodingKey {
                case qomType = "qom-type", id, size, share, memPath = "mem-path", prealloc, hugetlb
            }
        }
        guard let object = try? JSONDecoder().decode(Object.self, from: Data(text.utf8)) else { return [:] }
        let members: [String: String?] = [
            "qom-type": object.qomType, "id": object.id, "size": object.size.map { String($0) },
            "share": object.share.map { $0 ? "on" : "off" }, "mem-path": object.memPath,
            "prealloc": object.prealloc.map { $0 ? "on" : "off" }, "hugetlb": object.hugetlb.map { $0 ? "on" : "off" },
        ]
        return members.compactMapValues { $0 }
    }

    /// QemuOpts, `VALUE,key=value,...` with `,,` standing for a literal comma; a leading
    /// value without a key is returned under the key `""`. A later part without `=` is a
    /// flag in QemuOpts' old short form, as QEMU still reads it: `server` is `server=on`,
    /// `nowait` is `wait=off` (`no` and the key).
    package static func optsProperties(_ text: String) -> [String: String] {
        var parts: [String] = []
        var current = ""
        var characters = text[...]
        while let character = characters.popFirst() {
            if character == "," {
                if characters.first == "," {
                    characters.removeFirst()
                    current.append(",")
                } else {
                    parts.append(current)
                    current = ""
                }
            } else {
                current.append(character)
            }
        }
        parts.append(current)
        var properties: [String: String] = [:]
        for (index, part) in parts.enumerated() {
            if let equals = part.firstIndex(of: "=") {
                properties[String(part[..<equals])] = String(part[part.index(after: equals)...])
            } else if index == 0 {
                properties[""] = part  // The implied first key (the type of an -object).
            } else if part.hasPrefix("no") {
                properties[String(part.dropFirst(2))] = "off"
            } else if !part.isEmpty {
                properties[part] = "on"
            }
        }
        return properties
    }

    /// QEMU's size syntax: bytes, or a number with a binary suffix `K`, `M`, `G`, `T`, `P`, `E`.
    package static func parseSize(_ text: String) -> Int? {
        if let bytes = Int(text) { return bytes }
        guard let suffix = text.last?.uppercased(), let number = Double(text.dropLast()) else { return nil }
        guard let power = ["B": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6][suffix] else { return nil }
        let bytes = number * pow(1024, Double(power))
        return bytes < Double(Int.max) ? Int(bytes) : nil
    }

    package static func parseBool(_ text: String) -> Bool? {
        switch text {
        case "on", "yes", "true", "y": true
        case "off", "no", "false", "n": false
        default: nil
        }
    }
}

/// One memory backend of `query-memdev` (QAPI's `Memdev`): a `memory-backend-ram`,
/// `-file` or `-memfd` object that holds guest RAM.
///
/// ```json
/// {"id": "pc.ram", "size": 4294967296, "merge": true, "dump": true, "prealloc": false,
///  "share": true, "reserve": true, "host-nodes": [], "policy": "default"}
/// ```
///
/// `merge` is the backend's `madvise(MADV_MERGEABLE)`: whether the kernel's ksmd may merge
/// its pages. `share` says whether the mapping is `MAP_SHARED` (a memfd or file another
/// process, vhost-user or Samepage, can map) or private to QEMU.
public struct QMPMemoryBackend: Sendable, Hashable {
    /// The backend's object id (`pc.ram`, `ram-node0`, `mem0`); nil for a backend created
    /// without one (QEMU before 2.9 did not report it).
    public var id: String?
    /// Bytes of guest RAM the backend holds.
    public var size: UInt64
    /// Whether its pages are marked mergeable for the kernel's KSM.
    public var merge: Bool
    /// Whether its pages go into a core dump.
    public var dump: Bool
    /// Whether QEMU touched every page at start-up (`prealloc=on`).
    public var prealloc: Bool
    /// Whether the mapping is shared (`share=on`): a memfd or file other processes can map.
    public var share: Bool
    /// Whether swap space is reserved for it (QEMU 6.1 and later; nil before).
    public var reserve: Bool?
    /// The host NUMA nodes of its policy; empty for none.
    public var hostNodes: [Int]
    /// Its NUMA policy: `default`, `preferred`, `bind` or `interleave`.
    public var policy: String

    public init(
        id: String?, size: UInt64, merge: Bool, dump: Bool, prealloc: Bool, share: Bool, reserve: Bool?,
        hostNodes: [Int], policy: String
    ) {
        self.id = id
        self.size = size
        self.merge = merge
        self.dump = dump
        self.prealloc = prealloc
        self.share = share
        self.reserve = reserve
        self.hostNodes = hostNodes
        self.policy = policy
    }

    init(_ reader: QMPReplyReader) throws(QMPReplyError) {
        var nodes: [Int] = []
        for node in try reader.array("host-nodes") {
            guard let number = node.int64Value else { throw QMPReplyError("a host node of \(reader.what) is not an integer: \(node)") }
            nodes.append(Int(number))
        }
        self.init(
            id: try reader.optionalString("id"), size: try reader.uint("size"), merge: try reader.bool("merge"),
            dump: try reader.bool("dump"), prealloc: try reader.bool("prealloc"), share: try reader.bool("share"),
            reserve: try reader.optionalBool("reserve"), hostNodes: nodes, policy: try reader.string("policy"))
    }
}

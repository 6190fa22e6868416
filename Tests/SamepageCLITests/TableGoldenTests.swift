import SamepageCLI
import SamepageCore
import SamepageModel
import Testing

/// What `sharing`, `list` and `policy show` print, from fixed values, against text written
/// out by hand.
@Suite struct TableGoldenTests {
    @Test("sharing: the corner cell keeps its width, so each guest's label stands above its column")
    func sharingMatrix() {
        let matrix = SharingMatrix(
            guests: [
                GuestIdentity(name: "web-1", uuid: "u1"), GuestIdentity(name: "db", uuid: "u2"),
                GuestIdentity(name: "cache-long", uuid: "u3"),
            ],
            stableNodes: [[1200, 35, 0], [35, 8, 0], [0, 0, 70]])
        let expected = """
            Stable nodes (merged contents) with pages in both guests; the diagonal: each guest's own.
                        web-1  db  cache-long
            ---------------------------------
            web-1        1200  35           0
            db             35   8           0
            cache-long      0   0          70
            """
        #expect(SharingTable(matrix).text == expected)
    }

    @Test("list: sizes in binary units, no UUID unless asked, why a guest is not mapped below")
    func guestList() {
        let expected = """
            Name   Source       State    Mode   Group    RAM    Sharing      Zero  Reclaimed
            --------------------------------------------------------------------------------
            web-1  libvirt      running  merge  web    1 GiB  141.5 MiB  84.1 MiB    3.2 MiB
            db-2   proxmox 101  paused   off    -          -        0 B       0 B        0 B
            db-2: not mapped: policy mode is off
            """
        #expect(GuestListTable(Self.guests).text == expected)
    }

    @Test("list --uuid: the UUID after the name")
    func guestListWithUUID() {
        let expected = """
            Name   UUID                                  Source       State    Mode   Group    RAM    Sharing      Zero  Reclaimed
            ----------------------------------------------------------------------------------------------------------------------
            web-1  8f0e2a52-1111-4a7e-9d7c-3f6b1c0e0001  libvirt      running  merge  web    1 GiB  141.5 MiB  84.1 MiB    3.2 MiB
            db-2   8f0e2a52-1111-4a7e-9d7c-3f6b1c0e0002  proxmox 101  paused   off    -          -        0 B       0 B        0 B
            db-2: not mapped: policy mode is off
            """
        #expect(GuestListTable(Self.guests, showsUUID: true).text == expected)
    }

    @Test("list fits in 100 columns with long names, sources and large sizes")
    func guestListWidth() {
        var wide = Self.guests[0]
        wide.name = "mail-gateway-01"
        wide.trustGroup = "frontend"
        wide.state = "shut off"
        wide.regions = [RegionStatus(backend: "pc.ram", kind: "memfd", path: nil, bytes: 1_536 << 30, pages: 0)]
        wide.counters.pagesSharing = 100_000_000
        wide.reclaim.bytesReclaimed = 999 << 30
        var proxmox = Self.guests[1]
        proxmox.vmid = 10_000
        let lines = GuestListTable([wide, proxmox]).text.split(separator: "\n")
        #expect(lines.allSatisfy { $0.count <= 100 }, "\(lines.map(\.count))")
        #expect(lines[2].contains("1.5 TiB"))
    }

    @Test("A table trims the end of a line only")
    func trimming() {
        let table = TextTable(columns: [.init(""), .init("b"), .init("c")], rows: [["x", "1", ""]])
        #expect(table.text == "   b  c\n-------\nx  1")
    }

    static let guests: [GuestStatus] = {
        var web = GuestStatus(
            name: "web-1", uuid: "8f0e2a52-1111-4a7e-9d7c-3f6b1c0e0001", state: "running", mapped: true, mode: .merge,
            trustGroup: "web", backend: "memfd",
            regions: [RegionStatus(backend: "pc.ram", kind: "memfd", path: nil, bytes: 1 << 30, pages: 262_144)])
        web.counters.pagesSharing = 36_224  // 141.5 MiB
        web.counters.zeroPages = 21_530  // 84.1 MiB
        web.reclaim.bytesReclaimed = 3_355_443  // 3.2 MiB
        var db = GuestStatus(
            name: "db-2", uuid: "8f0e2a52-1111-4a7e-9d7c-3f6b1c0e0002", state: "paused", mapped: false,
            reason: "policy mode is off", mode: .off)
        db.source = .proxmox
        db.vmid = 101
        return [web, db]
    }()
}

import SamepageModel
import TestSupport
import Testing
@testable import SamepageConfig

@Suite("Policy files of Proxmox VE guests: VMID.toml") struct PolicyDirectoryVMIDTests {
    /// Two Proxmox guests with one name (Proxmox allows it), and a libvirt guest named 101.
    let vm101 = GuestIdentity(name: "web", uuid: "6f1c1f3e-5d0e-4a3b-9b7a-0c4e2d1f8a90")
    let vm102 = GuestIdentity(name: "web", uuid: "11111111-2222-3333-4444-555555555555")
    let libvirt101 = GuestIdentity(name: "101", uuid: "99999999-8888-7777-6666-555555555555")

    @Test func theVMIDFileBeatsTheNameFileAndTellsSameNamedGuestsApart() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("101.toml", "mode = \"zero\"\ntrust_group = \"by-vmid\"")
        try directory.write("web.toml", "mode = \"report\"\ntrust_group = \"by-name\"")
        let policies = PolicyDirectory(directory: directory.path)
        #expect(policies.reload() == [])

        #expect(policies.policy(for: vm101, vmid: 101).policy == GuestPolicy(mode: .zero, trustGroup: "by-vmid"))
        #expect(policies.policy(for: vm101, vmid: 101).source == directory.file("101.toml"))
        // VM 102, also named web, has no VMID file: its name file.
        #expect(policies.policy(for: vm102, vmid: 102).policy == GuestPolicy(mode: .report, trustGroup: "by-name"))
        // A guest outside Proxmox named 101 keeps the name lookup it always had.
        #expect(policies.policy(for: libvirt101).source == directory.file("101.toml"))
    }

    @Test func theUUIDFileStillComesFirst() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("\(vm101.uuid).toml", "mode = \"merge\"\ntrust_group = \"by-uuid\"")
        try directory.write("101.toml", "mode = \"zero\"")
        let policies = PolicyDirectory(directory: directory.path)
        #expect(policies.reload() == [])
        #expect(policies.policy(for: vm101, vmid: 101).policy.trustGroup == "by-uuid")
    }

    @Test func aProxmoxGuestNamedAfterAnotherVMIDDoesNotGetItsPolicy() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try directory.write("102.toml", "mode = \"merge\"\ntrust_group = \"vm102\"")
        let policies = PolicyDirectory(directory: directory.path, defaultPolicy: GuestPolicy(mode: .off))
        #expect(policies.reload() == [])
        // VM 103 named "102": not VM 102's policy.
        let impostor = GuestIdentity(name: "102", uuid: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
        #expect(policies.policy(for: impostor, vmid: 103).policy == GuestPolicy(mode: .off))
        #expect(policies.policy(for: impostor, vmid: 103).source == nil)
    }
}

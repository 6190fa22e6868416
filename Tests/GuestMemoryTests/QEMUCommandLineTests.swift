import Testing
@testable import GuestMemory

@Suite struct QEMUCommandLineTests {
    /// As libvirt 9.0 starts QEMU 7.2 for a memfd guest (abridged).
    static let jsonArguments = [
        "/usr/bin/qemu-system-x86_64", "-name", "guest=sp-memfd-1,debug-threads=on", "-S",
        "-object", #"{"qom-type":"secret","id":"masterKey0","format":"raw","file":"/var/lib/libvirt/qemu/domain-3-sp-memfd-1/master-key.aes"}"#,
        "-machine", "pc-i440fx-7.2,usb=off,dump-guest-core=off,memory-backend=pc.ram",
        "-accel", "tcg", "-cpu", "qemu64", "-m", "256",
        "-object", #"{"qom-type":"memory-backend-memfd","id":"pc.ram","share":true,"x-use-canonical-path-for-ramblock-id":false,"size":268435456}"#,
        "-overcommit", "mem-lock=off", "-smp", "1,sockets=1,cores=1,threads=1",
        "-uuid", "0f5e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
    ]

    @Test func jsonObjects() {
        #expect(QEMUCommandLine.memoryBackends(arguments: Self.jsonArguments) == [
            MemoryBackendObject(id: "pc.ram", kind: .memfd, size: 268_435_456, shared: true),
        ])
    }

    @Test func jsonDefaultsAndKinds() {
        let arguments = [
            "-object", #"{"qom-type":"memory-backend-ram","id":"pc.ram","size":1073741824}"#,
            "-object", #"{"qom-type":"memory-backend-file","id":"ram-node0","mem-path":"/dev/hugepages/libvirt/qemu/1-nfv","share":false,"prealloc":true,"size":2147483648,"host-nodes":[0],"policy":"bind"}"#,
            "-object", #"{"qom-type":"memory-backend-memfd","id":"memdimm0","hugetlb":true,"hugetlbsize":2097152,"size":536870912}"#,
            "-object", #"{"qom-type":"memory-backend-epc","id":"memepc0","prealloc":true,"size":67108864}"#,
            "-object", "not json {",
        ]
        #expect(QEMUCommandLine.memoryBackends(arguments: arguments) == [
            MemoryBackendObject(id: "pc.ram", kind: .ram, size: 1 << 30, shared: false),
            MemoryBackendObject(id: "ram-node0", kind: .file, size: 2 << 30, shared: false,
                                memPath: "/dev/hugepages/libvirt/qemu/1-nfv", prealloc: true),
            MemoryBackendObject(id: "memdimm0", kind: .memfd, size: 512 << 20, shared: true, hugetlb: true),
            MemoryBackendObject(id: "memepc0", kind: .other("memory-backend-epc"), size: 64 << 20, shared: false, prealloc: true),
        ])
    }

    @Test func queueOptsObjects() {
        let arguments = [
            "-object", "memory-backend-file,id=ram-node0,mem-path=/var/lib/libvirt/qemu/ram/1-g,,x/ram-node0,share=yes,size=1G",
            "-object", "memory-backend-memfd,id=ram-node1,size=536870912,share=off",
            "-object", "memory-backend-ram,id=memdimm0,size=256M",
            "-object", "iothread,id=iothread1",
            "-object",
        ]
        #expect(QEMUCommandLine.memoryBackends(arguments: arguments) == [
            MemoryBackendObject(id: "ram-node0", kind: .file, size: 1 << 30, shared: true,
                                memPath: "/var/lib/libvirt/qemu/ram/1-g,x/ram-node0"),
            MemoryBackendObject(id: "ram-node1", kind: .memfd, size: 512 << 20, shared: false),
            MemoryBackendObject(id: "memdimm0", kind: .ram, size: 256 << 20, shared: false),
        ])
    }

    /// QemuOpts' old flags: `server` for `server=on`, `nowait` for `wait=off`; the first part
    /// without `=` stays the implied key's value.
    @Test func bareFlags() {
        #expect(QEMUCommandLine.optsProperties("/tmp/q.sock,server,nowait") == ["": "/tmp/q.sock", "server": "on", "wait": "off"])
        #expect(QEMUCommandLine.memoryBackends(arguments: ["-object", "memory-backend-file,id=m,size=1M,mem-path=/dev/shm/m,share"])
            == [MemoryBackendObject(id: "m", kind: .file, size: 1 << 20, shared: true, memPath: "/dev/shm/m")])
    }

    @Test func sizes() {
        #expect(QEMUCommandLine.parseSize("4096") == 4096)
        #expect(QEMUCommandLine.parseSize("4k") == 4096)
        #expect(QEMUCommandLine.parseSize("1.5G") == 3 << 29)
        #expect(QEMUCommandLine.parseSize("2T") == 2 << 40)
        #expect(QEMUCommandLine.parseSize("12Q") == nil)
        #expect(QEMUCommandLine.parseSize("") == nil)
    }

    @Test func cmdlineBytes() {
        let bytes = Array("qemu\0-name\0guest=a\0\0-S\0".utf8)
        #expect(QEMUCommandLine.arguments(cmdline: bytes) == ["qemu", "-name", "guest=a", "", "-S"])
        #expect(QEMUCommandLine.arguments(cmdline: []) == [])
    }
}

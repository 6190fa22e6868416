// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "Samepage",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "samepage", targets: ["samepage"]),
        .executable(name: "samepaged", targets: ["samepaged"]),
        .library(name: "SamepageCore", targets: ["SamepageCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.1.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        // TLS for the metrics endpoint (BoringSSL, built in: no system OpenSSL at run time).
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        // The metrics endpoint's web configuration file: Prometheus exporter-toolkit's YAML.
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        // Already in the graph through SwiftNIO; named here for `FileDescriptor` and `Errno`.
        .package(url: "https://github.com/apple/swift-system.git", from: "1.4.0"),
    ],
    targets: [
        // C libraries, wrapped once each.
        .systemLibrary(
            name: "CXXHash",
            pkgConfig: "libxxhash",
            providers: [.apt(["libxxhash-dev"])]
        ),
        .systemLibrary(
            name: "CLibvirt",
            pkgConfig: "libvirt",
            providers: [.apt(["libvirt-dev"])]
        ),

        // libcrypt's bcrypt (crypt_rn) for the metrics endpoint's basic authentication, and
        // libcrypto's SHA-256 for the key of its cache of checked credentials.
        .systemLibrary(
            name: "CCrypt",
            providers: [.apt(["libcrypt-dev", "libssl-dev"])]
        ),

        // Linux calls Swift's Glibc module does not import (_GNU_SOURCE), wrapped once.
        .target(name: "CLinux"),

        // Owners of descriptors and mappings over swift-system's FileDescriptor, the one
        // error type of a failed call (errno read first), the one whole-file reader, the one
        // Unix stream socket (address, connect, send, lines) of QMP and the control socket.
        .target(name: "LinuxSystem", dependencies: ["CLinux", .product(name: "SystemPackage", package: "swift-system")]),

        // A blocking client of QEMU's QMP monitor socket, for guests libvirt does not manage
        // (Proxmox VE, plain QEMU): greeting, commands with ids and deadlines, events, typed
        // replies, over a JSON value type of its own.
        .target(name: "QMP", dependencies: ["LinuxSystem"]),

        // The engine: slots, rmap items, stable and unstable trees, cursor, counters. No I/O.
        .target(name: "SamepageCore", dependencies: ["CXXHash"]),

        // Linux edges: image files and guest RAM backends, residency, pread.
        .target(
            name: "GuestMemory",
            dependencies: ["SamepageCore", "LinuxSystem", "CLinux", .product(name: "SystemPackage", package: "swift-system")]
        ),

        // QEMU guests libvirt does not manage (Proxmox VE, plain QEMU): found in /proc, named
        // and described from their command lines; Proxmox's VM config; libvirt's own told apart.
        .target(name: "QEMUGuests", dependencies: ["GuestMemory", "LinuxSystem"]),

        // The kernel's own KSM, governed: ksmd's sysfs knobs and counters, typed; the host's
        // settings saved and restored; /proc/PID/ksm_stat; when ksmd runs (a pure policy).
        // Over the engine's value types (KernelKSMConfiguration among them), never the model.
        .target(name: "KernelKSM", dependencies: ["LinuxSystem", "SamepageCore"]),

        // Thin Swift wrapper over libvirt's C API.
        .target(name: "Libvirt", dependencies: ["CLibvirt"]),

        // What the agent reports and is told: guest status, snapshot, policy, identity, with
        // one wire form (Codable) each. Over the engine's types only: no I/O, no libvirt.
        .target(name: "SamepageModel", dependencies: ["SamepageCore"]),

        // The agent: discovery <-> engine, on threads of its own.
        .target(
            name: "SamepageAgent",
            dependencies: [
                "SamepageModel", "SamepageCore", "GuestMemory", "LinuxSystem", "Libvirt", "KernelKSM", "QMP", "QEMUGuests",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // Policy files and the daemon's configuration file (TOML), with file:line errors.
        .target(
            name: "SamepageConfig",
            dependencies: [
                "SamepageModel", "SamepageCore", .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),

        // The control API: versioned JSON over a Unix socket, server and client.
        .target(
            name: "SamepageControl",
            dependencies: [
                "SamepageModel", "SamepageCore", "LinuxSystem",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),

        // The Prometheus endpoint: the agent's snapshot in Prometheus's text format (written by
        // swift-prometheus), served over HTTP by SwiftNIO, over TLS (NIOSSL) and with basic
        // authentication (bcrypt, CCrypt) when configured.
        .target(
            name: "SamepageMetrics",
            dependencies: [
                "SamepageModel", "SamepageCore", "CCrypt",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),

        // What the CLI prints and where it finds the daemon: tables and key-value blocks rendered
        // from model values (pure functions, golden-tested), the control socket's path
        // (--socket, SAMEPAGE_SOCKET, the daemon's configuration file), guest-name completion.
        .target(
            name: "SamepageCLI",
            dependencies: ["SamepageModel", "SamepageCore", "SamepageConfig", "SamepageControl"]
        ),

        .executableTarget(
            name: "samepaged",
            dependencies: [
                "SamepageAgent", "SamepageConfig", "SamepageControl", "SamepageCore", "SamepageMetrics", "SamepageModel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        .executableTarget(
            name: "samepage",
            dependencies: [
                "SamepageCore", "GuestMemory", "SamepageAgent", "SamepageCLI", "SamepageConfig", "SamepageControl",
                "SamepageModel",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // What the benchmarks share: page contents from a seed, the process's clocks and memory.
        .target(
            name: "BenchmarkSupport",
            dependencies: ["SamepageCore", "SamepageMetrics"],
            path: "Benchmarks/BenchmarkSupport"
        ),
        .executableTarget(
            name: "EngineBenchmark",
            dependencies: ["SamepageCore", "GuestMemory", "BenchmarkSupport"],
            path: "Benchmarks/EngineBenchmark"
        ),
        // Many guests through the daemon's path: scan rate, tracking memory, list, sharing, /metrics.
        .executableTarget(
            name: "ScaleBenchmark",
            dependencies: [
                "SamepageCore", "GuestMemory", "CLinux", "SamepageModel", "SamepageControl", "SamepageMetrics",
                "BenchmarkSupport",
            ],
            path: "Benchmarks/ScaleBenchmark"
        ),

        // Test-only: a multi-threaded process that flips memfd pages between zero and data,
        // the stand-in guest of the reclaim stress test.
        .executableTarget(name: "samepage-stress-writer", dependencies: ["CLinux"], path: "Tests/StressWriter"),
        // Test-only: a process whose private (anonymous, or MAP_PRIVATE file) memory holds known
        // pages and leaves the rest untouched, the stand-in guest of the private-RAM tests.
        .executableTarget(name: "samepage-private-guest", path: "Tests/PrivateGuest"),

        // What several test targets share (a replayable random source), in one place.
        .target(name: "TestSupport", path: "Tests/TestSupport"),

        .testTarget(name: "SamepageCoreTests", dependencies: ["SamepageCore", "TestSupport"]),
        .testTarget(name: "LinuxSystemTests", dependencies: ["LinuxSystem"]),
        .testTarget(name: "QMPTests", dependencies: ["QMP", "LinuxSystem"]),
        .testTarget(name: "GuestMemoryTests", dependencies: ["GuestMemory", "SamepageCore"]),
        .testTarget(name: "QEMUGuestsTests", dependencies: ["QEMUGuests", "GuestMemory", "LinuxSystem"]),
        .testTarget(name: "KernelKSMTests", dependencies: ["KernelKSM", "LinuxSystem", "SamepageModel", "SamepageCore"]),
        .testTarget(name: "LibvirtTests", dependencies: ["Libvirt"]),
        .testTarget(name: "SamepageModelTests", dependencies: ["SamepageModel", "SamepageCore"]),
        .testTarget(
            name: "SamepageAgentTests",
            dependencies: ["SamepageAgent", "SamepageModel", "SamepageCore", "KernelKSM", "QEMUGuests", "QMP", "LinuxSystem", "Libvirt"]),
        .testTarget(name: "SamepageConfigTests", dependencies: ["SamepageConfig", "SamepageModel", "SamepageCore", "TestSupport"]),
        .testTarget(
            name: "SamepageControlTests", dependencies: ["SamepageControl", "SamepageModel", "SamepageCore", "LinuxSystem"],
            exclude: ["Golden"]),
        .testTarget(
            name: "SamepageCLITests", dependencies: ["SamepageCLI", "SamepageModel", "SamepageCore", "SamepageConfig", "TestSupport"]),
        // The samepage executable's commands: options and help, parsed without running them.
        .testTarget(name: "samepageTests", dependencies: ["samepage", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .testTarget(
            name: "SamepageMetricsTests",
            dependencies: [
                "SamepageMetrics", "SamepageModel", "SamepageCore",
                // A TLS client that reads only when told to, for the bounds over TLS.
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            exclude: ["Golden"]),
        // The packaged Prometheus rules, through promtool (Debian's prometheus package).
        .testTarget(name: "PackagingTests"),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["Libvirt", "GuestMemory", "SamepageCore", "SamepageModel", "SamepageAgent", "KernelKSM", "QMP"]
        ),
    ],
    swiftLanguageModes: [.v6]
)

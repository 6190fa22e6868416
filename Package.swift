// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "Samepage",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "samepage", targets: ["samepage"]),
        .library(name: "SamepageCore", targets: ["SamepageCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
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

        // The engine: slots, rmap items, stable and unstable trees, cursor, counters. No I/O.
        .target(name: "SamepageCore", dependencies: ["CXXHash"]),

        // Linux edges: image files and guest RAM backends, residency, pread.
        .target(name: "GuestMemory", dependencies: ["SamepageCore"]),

        // Thin Swift wrapper over libvirt's C API.
        .target(name: "Libvirt", dependencies: ["CLibvirt"]),

        // The agent: discovery <-> engine, on threads of its own.
        .target(
            name: "SamepageAgent",
            dependencies: [
                "SamepageCore", "GuestMemory", "Libvirt",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        .executableTarget(
            name: "samepage",
            dependencies: [
                "SamepageCore", "GuestMemory", "SamepageAgent", "Libvirt",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        .executableTarget(
            name: "EngineBenchmark",
            dependencies: ["SamepageCore", "GuestMemory"],
            path: "Benchmarks/EngineBenchmark"
        ),

        .testTarget(name: "SamepageCoreTests", dependencies: ["SamepageCore"]),
        .testTarget(name: "GuestMemoryTests", dependencies: ["GuestMemory", "SamepageCore"]),
        .testTarget(name: "LibvirtTests", dependencies: ["Libvirt"]),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["Libvirt", "GuestMemory", "SamepageCore", "SamepageAgent"]
        ),
    ],
    swiftLanguageModes: [.v6]
)

// swift-tools-version:6.1
//
// Sluice: one package, layered so that the dependency arrows point one way:
//   executables → SluiceDaemon (wiring) → SluiceControl / SluiceDataPath /
//   SluiceNIC / SluicePluginHost → SluiceSystem → C shims and system libraries.
import PackageDescription

let package = Package(
    name: "Sluice",
    products: [
        .executable(name: "sluiced", targets: ["sluiced"]),
        .executable(name: "sluicectl", targets: ["sluicectl"]),
        // Driver-quirk plugins are C shared objects the daemon dlopen()s.
        .library(name: "sluice_generic", type: .dynamic, targets: ["SluicePluginGeneric"]),
        .library(name: "sluice_mlx5", type: .dynamic, targets: ["SluicePluginMlx5"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
    ],
    targets: [
        // MARK: C system libraries and shims
        .systemLibrary(
            name: "CXDP", pkgConfig: "libxdp",
            providers: [.apt(["libxdp-dev", "libbpf-dev"])]),
        .systemLibrary(
            name: "CNetlink", pkgConfig: "libnl-genl-3.0",
            providers: [.apt(["libnl-3-dev", "libnl-genl-3-dev"])]),
        .target(name: "CSluiceShims"),
        // toml++, the copy TOMLKit vendors (its Swift binding keeps no source
        // positions), behind a C interface: no C++ interoperability in Swift.
        .target(
            name: "CTOMLParser",
            // Only for toml++'s header, which TOMLKit does not export.
            dependencies: [.product(name: "TOMLKit", package: "TOMLKit")]),
        // The public plugin ABI: header only (sluice/driver_plugin.h).
        .target(name: "CSluiceDriverABI"),

        // MARK: Libraries, one per concern
        // The vocabulary every layer shares and the wire carries: interface
        // names, enumerations, control requests and replies. Foundation only,
        // so sluicectl links it without libxdp or libnl.
        .target(name: "SluiceProtocol"),
        .target(
            name: "SluiceSystem",
            dependencies: [
                "SluiceProtocol", "CSluiceShims",
                .product(name: "SystemPackage", package: "swift-system"),
            ]),
        .target(
            name: "SluiceNIC",
            dependencies: [
                "SluiceProtocol", "SluiceSystem", "CSluiceShims", "CNetlink", "CXDP",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "SluicePluginHost",
            dependencies: [
                "SluiceProtocol", "SluiceSystem", "CSluiceDriverABI",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "SluiceModules",
            dependencies: [
                "SluiceSystem", "SluiceProtocol",
                .product(name: "Atomics", package: "swift-atomics"),
            ]),
        .target(
            name: "SluiceDataPath",
            dependencies: [
                // CNetlink: KernelFeatures asks for the "netdev" family.
                "SluiceProtocol", "SluiceSystem", "SluiceModules", "CXDP", "CNetlink", "CSluiceShims",
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // BPF C is compiled (and embedded) by BPFCompilerPlugin, not by SwiftPM.
            exclude: ["BPF"],
            plugins: ["BPFCompilerPlugin"]),
        // Runs the toolchain's clang with -target bpf on a target's BPF/*.bpf.c.
        .plugin(name: "BPFCompilerPlugin", capability: .buildTool(), path: "Sources/BPFCompilerPlugin"),
        .target(
            name: "SluiceControl",
            dependencies: [
                "SluiceProtocol", "SluiceSystem", "CSluiceShims",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "SluiceDaemon",
            dependencies: [
                "SluiceControl", "SluiceNIC", "SluicePluginHost", "SluiceDataPath",
                "SluiceModules", "SluiceSystem", "SluiceProtocol", "CTOMLParser",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),

        // MARK: Executables (thin)
        .executableTarget(
            name: "sluiced",
            dependencies: [
                "SluiceDaemon",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(
            name: "sluicectl",
            dependencies: [
                "SluiceProtocol", "SluiceControl", "SluiceModules",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        // tools/bench's Swift side (the ring micro-benchmark); not installed.
        .executableTarget(
            name: "sluice-bench",
            dependencies: ["SluiceDataPath", "SluiceModules", "SluiceProtocol", "CSluiceShims"],
            path: "tools/bench/swift"),

        // MARK: Driver-quirk plugins (C, dlopen()ed by SluicePluginHost)
        .target(name: "SluicePluginGeneric", dependencies: ["CSluiceDriverABI"], path: "Plugins-src/generic"),
        .target(name: "SluicePluginMlx5", dependencies: ["CSluiceDriverABI"], path: "Plugins-src/mlx5"),

        // MARK: Tests
        .target(
            name: "SluiceTestSupport",
            dependencies: ["SluiceSystem", "SluiceControl"],
            path: "Tests/SluiceTestSupport"),
        .testTarget(name: "SluiceControlTests", dependencies: ["SluiceControl", "SluiceTestSupport"]),
        .testTarget(
            name: "SluiceNICTests", dependencies: ["SluiceNIC", "SluiceTestSupport"]),
        .testTarget(
            name: "SluicePluginHostTests", dependencies: ["SluicePluginHost", "SluiceTestSupport"]),
        .testTarget(
            name: "SluiceDataPathTests",
            dependencies: ["SluiceDataPath", "SluiceModules", "SluiceTestSupport"]),
        .testTarget(
            name: "SluiceModulesTests", dependencies: ["SluiceModules", "SluiceProtocol", "SluiceTestSupport"]),
        .testTarget(name: "SluiceDaemonTests", dependencies: ["SluiceDaemon", "SluiceProtocol", "SluiceTestSupport"]),
        .testTarget(
            name: "IntegrationTests",
            // SluiceDataPath: the kernel-feature probes, checked against what the tools do.
            dependencies: ["SluiceTestSupport", "SluiceControl", "SluiceDataPath", "SluiceModules", "sluiced", "sluicectl"],
            // ProtocolShapeTests read their golden file from the repository, not as a resource.
            exclude: ["Golden"]),
    ],
    swiftLanguageModes: [.v6]
)

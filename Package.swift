// swift-tools-version: 6.1
import PackageDescription

/// This file's directory: where vireo-vmm's linker wrapper (scripts/static-pie-ld) lives.
let packageRoot = String(#filePath.dropLast("/Package.swift".count))

let package = Package(
    name: "Vireo",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "vireo", targets: ["vireo"]),
        // The VMM alone (`run`, `version`): what the daemon runs each VM with, for less memory per VM.
        .executable(name: "vireo-vmm", targets: ["vireo-vmm"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // No default traits: swift-configuration and full Foundation are not needed (less to build).
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0", traits: []),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
        // Already in the graph through Hummingbird; named for the products the Manager uses directly.
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
        // Already in the graph through Hummingbird; the daemon's request timeouts read HTTP parts.
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.20.0"),
        // SHA-256 of image blobs (BoringSSL's assembly; already in the graph through Hummingbird's deps).
        .package(url: "https://github.com/apple/swift-crypto", from: "4.0.0"),
    ],
    targets: [
        // C shim over <linux/kvm.h>: ioctl wrappers and kvm_run accessors. Only KVM imports it.
        .target(name: "CKVM"),
        // C shim for isolation: seccomp, prctl, namespaces, mounts, credentials, affinity, SIGSYS report.
        .target(name: "CVireoSystem"),
        // Safe Swift over /dev/kvm.
        .target(name: "KVM", dependencies: ["CKVM"]),
        // Guest RAM: mmap-backed, bounds-checked.
        .target(name: "Memory"),
        // x86 CPU setup, boot protocols, instruction fallback.
        .target(name: "X86", dependencies: ["KVM", "Memory"]),
        // Linux calls Glibc's Swift module lacks (eventfd, getrandom, fallocate). Only Devices imports it.
        .target(name: "CLinux"),
        // Device models and the I/O bus.
        .target(name: "Devices", dependencies: ["Memory", "CLinux", "VMSpec"]),
        // One VM's typed spec, its limits and validator, and a Foundation-free JSON coder: what the
        // manager and the VMM share (no KVM, no Foundation).
        .target(name: "VMSpec"),
        // Machine assembly, vCPU threads, exit loop.
        .target(name: "VMM", dependencies: ["KVM", "Memory", "X86", "Devices", "CVireoSystem", "VMSpec"]),
        // The VM manager daemon: REST API over a Unix socket, SQLite store, supervisor of VMM processes.
        // Never imports KVM: it runs VMs as `vireo run` child processes.
        .target(name: "Manager", dependencies: [
            "VMSpec", "Images",  // image VMs: the daemon's own image cache
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),  // the connection cap
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),  // request timeouts
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], resources: [.embedInCode("openapi.json")]),
        // `run`'s flags → spec → running VM, and `vireo-vmm`'s hand-written argument parser: no
        // ArgumentParser, no Foundation (what every VMM process maps).
        .target(name: "VMMRun", dependencies: ["VMM", "KVM", "VMSpec"]),
        // `vireo run` and `vireo version`: the VMM's command line on ArgumentParser, without the manager.
        .target(name: "VMMCommand", dependencies: [
            "VMM", "KVM", "VMSpec", "VMMRun", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // OCI images: layouts and archives, the blob cache, layer unpacking, the ext4 base, the guest config.
        .target(name: "Images", dependencies: [.product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "VireoCLI", dependencies: [
            "VMM", "VMMCommand", "Manager", "Images", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "vireo", dependencies: ["VireoCLI", "VMM"]),
        // A fully static, position-independent executable (static-pie: glibc, libstdc++ and the Swift
        // runtime linked in, ASLR kept), so the binary `swift build -c release` gives users is the lean
        // VMM the daemon runs each VM with: no ld.so, no shared libraries mapped per VM, no ArgumentParser
        // or Foundation (bench/results/vmm-memory.md). Linked by the toolchain's lld (gold cannot link
        // static-pie) through scripts/static-pie-ld, which drops SwiftPM's `-rpath=$ORIGIN`: glibc's
        // static-pie start-up crashes on a DT_RUNPATH. glibc's user database is limited to its files
        // (main.swift).
        .executableTarget(name: "vireo-vmm", dependencies: ["VMMRun", "VMM", "CVireoSystem"], linkerSettings: [
            .unsafeFlags(["-static-executable", "-use-ld=lld", "-Xclang-linker", "-static-pie",
                          "-Xclang-linker", "--ld-path=\(packageRoot)/scripts/static-pie-ld"], .when(platforms: [.linux])),
        ]),
        // Host-side device throughput (bench/devices): the virtio models on real memory and backends.
        .executableTarget(name: "vireo-bench-devices", dependencies: ["Devices", "Memory"], path: "bench/DeviceBench"),
        // What the tests share: the prerequisite gate (strict in CI, skip-and-say-why locally).
        .target(name: "VireoTestSupport", path: "Tests/Support"),
        .testTarget(name: "MemoryTests", dependencies: ["Memory"]),
        .testTarget(name: "X86Tests", dependencies: ["X86", "KVM", "Memory", "VireoTestSupport"]),
        .testTarget(name: "DevicesTests", dependencies: ["Devices", "Memory", "VireoTestSupport"]),
        .testTarget(name: "VMMTests", dependencies: ["VMM", "KVM", "Devices"]),
        .testTarget(name: "ManagerTests", dependencies: ["Manager", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "IntegrationTests", dependencies: ["VMM", "KVM", "Manager", "VMMCommand", "VMSpec", "Images", "VireoTestSupport"]),
        .testTarget(name: "VMSpecTests", dependencies: ["VMSpec"]),
        .testTarget(name: "IsolationTests", dependencies: ["VMM"]),
        .testTarget(name: "ImagesTests", dependencies: ["Images"]),
    ]
)

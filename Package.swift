// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "Vireo",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "vireo", targets: ["vireo"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // C shim over <linux/kvm.h>: ioctl wrappers and kvm_run accessors. Only KVM imports it.
        .target(name: "CKVM"),
        // C shim for isolation: seccomp, prctl, namespaces, mounts, credentials, affinity, SIGSYS report.
        .target(name: "CSystem"),
        // Safe Swift over /dev/kvm.
        .target(name: "KVM", dependencies: ["CKVM"]),
        // Guest RAM: mmap-backed, bounds-checked.
        .target(name: "Memory"),
        // x86 CPU setup, boot protocols, instruction fallback.
        .target(name: "X86", dependencies: ["KVM", "Memory"]),
        // Device models and the I/O bus.
        .target(name: "Devices", dependencies: ["Memory"]),
        // Machine assembly, vCPU threads, exit loop.
        .target(name: "VMM", dependencies: ["KVM", "Memory", "X86", "Devices", "CSystem"]),
        .target(name: "VireoCLI", dependencies: [
            "VMM", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "vireo", dependencies: ["VireoCLI", "VMM"]),
        .testTarget(name: "MemoryTests", dependencies: ["Memory"]),
        .testTarget(name: "X86Tests", dependencies: ["X86", "KVM", "Memory"]),
        .testTarget(name: "DevicesTests", dependencies: ["Devices", "Memory"]),
        .testTarget(name: "IntegrationTests", dependencies: ["VMM", "KVM"]),
        .testTarget(name: "IsolationTests", dependencies: ["VMM"]),
    ]
)

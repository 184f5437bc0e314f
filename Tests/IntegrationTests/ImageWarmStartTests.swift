import Foundation
import Images
import Testing

/// Warm start of `vireo run --image` (issue 14): the first run boots the guest kernel once to the
/// image init's "ready" point and snapshots it; later runs of any image restore that snapshot with
/// their own disks and get their own clock, random seed and hostname. One warm-up boot, two restores
/// of two different images, then a corrupted snapshot that must fall back to a cold boot; `--cold`
/// boots without looking at the cache (in parallel).
@Suite(.enabled { try TestEnvironment.available("ImageWarmStartTests", .kvm, .kernel, .executable("/bin/busybox"), .executable("/usr/sbin/mke2fs")) })
struct ImageWarmStartTests {
    /// What each run prints: the image's own marker file, the kernel's hostname and 16 random bytes,
    /// with one program besides the shell (each exec costs seconds where guest kernels are emulated).
    static let probe = "read -r m < /marker; read -r h < /proc/sys/kernel/hostname; set -- $(od -An -N16 -tx1 /dev/urandom); IFS=; echo \"marker=$m host=$h random=$*\""

    /// A one-layer busybox image whose /marker holds `marker`.
    private func image(at path: String, marker: String) throws {
        let layer = try TestImages.layer { tar in
            try TestImages.busyboxLayer(&tar)
            tar.add(TarEntry(path: "bin/od", kind: .symlink, mode: 0o777, linkTarget: "busybox"))
            tar.add(TestImages.file("marker"), data: Array((marker + "\n").utf8))
        }
        try LayoutWriter(configuration: .init(Env: ["PATH=/bin"], Cmd: ["/bin/sh"])).write(layers: [layer], to: path)
    }

    private struct Run {
        let status: Int32?
        let output: String
        let errors: String
        /// Seconds from the start of `vireo` to the program's first output.
        let firstOutput: Double
        var fields: [String: String] {
            let line = output.split(separator: "\n").first { $0.hasPrefix("marker=") } ?? ""
            var result: [String: String] = [:]
            for pair in line.split(separator: " ") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { result[String(parts[0])] = String(parts[1]) }
            }
            return result
        }
    }

    private func run(_ options: [String], image: String, state: String) throws -> Run {
        let started = Date()
        let guest = try GuestProcess(arguments: ["run", "-v", "--memory", "256M", "--state-dir", state] + options
                                        + ["--image", image, "--", "sh", "-c", ImageWarmStartTests.probe],
                                     environment: ["VIREO_IMAGE_INITRAMFS": try TestImages.initramfs()])
        defer { guest.stop() }
        guest.closeInput()
        _ = guest.waitForOutput("marker=", timeout: 600)
        let firstOutput = Date().timeIntervalSince(started)
        let status = guest.waitForExit(timeout: 120)
        return Run(status: status, output: guest.output, errors: guest.errorOutput, firstOutput: firstOutput)
    }

    private static let restored = "warm start: restored the cached snapshot"
    private static let warmingUp = "booting it once to make a warm-start snapshot"

    @Test func twoImagesRestoreOneSnapshotWithTheirOwnFilesRandomBytesAndHostnames() throws {
        let dir = try TestEnvironment.freshDirectory("vireo-warm").path
        try image(at: dir + "/a", marker: "image-a")
        try image(at: dir + "/b", marker: "image-b")
        let state = dir + "/state"

        // The warm-up: one boot to the init's ready point, a snapshot, then this run restores it too.
        let first = try run([], image: dir + "/a", state: state)
        #expect(first.status == 0 && first.fields["marker"] == "image-a", "warm-up run: \(first.status ?? -1) \(first.output) \(first.errors.suffix(3000))")
        #expect(first.errors.contains(ImageWarmStartTests.warmingUp), "stderr: \(first.errors.suffix(3000))")
        TestEnvironment.log("warm start: first run (warm-up boot + snapshot + restore) to program output \(String(format: "%.1f", first.firstOutput)) s")
        let snapshots = try FileManager.default.contentsOfDirectory(atPath: state + "/images/warm").filter { !$0.hasPrefix(".") && !$0.hasSuffix(".lock") }
        #expect(snapshots.count == 1, "warm cache: \(snapshots)")

        // Two different images, each restoring the one snapshot (no boot), each seeing its own disk.
        let a = try run([], image: dir + "/a", state: state)
        let b = try run([], image: dir + "/b", state: state)
        for (label, result, marker) in [("a", a, "image-a"), ("b", b, "image-b")] {
            #expect(result.status == 0, "run \(label): \(result.status ?? -1) \(result.output) \(result.errors.suffix(3000))")
            #expect(result.errors.contains(ImageWarmStartTests.restored + " " + (snapshots.first?.prefix(12) ?? "?")),
                    "run \(label) did not restore the snapshot: \(result.errors.suffix(3000))")
            #expect(!result.errors.contains(ImageWarmStartTests.warmingUp), "run \(label) booted again: \(result.errors.suffix(3000))")
            #expect(result.fields["marker"] == marker, "run \(label) output: \(result.output)")
            #expect(result.fields["random"]?.count == 32, "run \(label) output: \(result.output)")
            TestEnvironment.log("warm start: run \(label) to program output \(String(format: "%.2f", result.firstOutput)) s")
        }
        // Clones of one snapshot: each its own random bytes and hostname (none the warm-up's).
        let randoms = [first, a, b].compactMap { $0.fields["random"] }
        let hosts = [first, a, b].compactMap { $0.fields["host"] }
        #expect(Set(randoms).count == 3, "random bytes: \(randoms)")
        #expect(Set(hosts).count == 3 && hosts.allSatisfy { $0.hasPrefix("vireo-") }, "hostnames: \(hosts)")

        // A corrupted snapshot is refused by its checksum, removed, and the run boots cold instead.
        let stateFile = "\(state)/images/warm/\(snapshots.first ?? "?")/state.bin"
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: stateFile)))
        bytes[bytes.count / 2] ^= 0x40
        try Data(bytes).write(to: URL(fileURLWithPath: stateFile))
        let fallback = try run([], image: dir + "/b", state: state)
        #expect(fallback.status == 0 && fallback.fields["marker"] == "image-b", "fallback: \(fallback.status ?? -1) \(fallback.output) \(fallback.errors.suffix(3000))")
        #expect(fallback.errors.contains("warm-start snapshot") && fallback.errors.contains("is unusable") && fallback.errors.contains("booting cold"),
                "stderr: \(fallback.errors.suffix(3000))")
        #expect(!fallback.errors.contains(ImageWarmStartTests.restored), "stderr: \(fallback.errors.suffix(3000))")
    }

    @Test func coldBootsWithoutTheCache() throws {
        let dir = try TestEnvironment.freshDirectory("vireo-warm-cold").path
        try image(at: dir + "/a", marker: "image-a")
        let state = dir + "/state"
        let cold = try run(["--cold"], image: dir + "/a", state: state)
        #expect(cold.status == 0 && cold.fields["marker"] == "image-a", "cold: \(cold.status ?? -1) \(cold.output) \(cold.errors.suffix(3000))")
        #expect(cold.errors.contains("cold boot (--cold)"), "stderr: \(cold.errors.suffix(3000))")
        #expect(!cold.errors.contains(ImageWarmStartTests.restored) && !cold.errors.contains(ImageWarmStartTests.warmingUp),
                "stderr: \(cold.errors.suffix(3000))")
        let warm = (try? FileManager.default.contentsOfDirectory(atPath: state + "/images/warm")) ?? []
        #expect(warm.isEmpty, "a cold run made warm-start files: \(warm)")
        TestEnvironment.log("--cold run to program output \(String(format: "%.1f", cold.firstOutput)) s")
    }
}

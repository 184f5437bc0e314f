import Foundation
import Images
import Testing

/// Warm start of `vireo run --image` (issue 14): the first run boots the guest kernel once to the
/// image init's "ready" point and snapshots it (the generic snapshot); a run of an image restores
/// that snapshot, has the guest mount and enter the image's root and pre-read its program, and
/// snapshots it again (the image snapshot, with the root disk as a template); later runs of that
/// image restore the image snapshot. Every run gets its own clock, random seed, hostname and copy of
/// the root disk. Then: a corrupted image snapshot falls back to the generic one, `vireo images rm`
/// removes the image's snapshots, and a corrupted generic snapshot falls back to a cold boot;
/// `--cold` boots without looking at the cache (in parallel).
@Suite(.enabled { try TestEnvironment.available("ImageWarmStartTests", .kvm, .kernel, .executable("/bin/busybox"), .executable("/usr/sbin/mke2fs")) })
struct ImageWarmStartTests {
    /// What each run prints: the image's own marker file, the kernel's hostname, whether the root
    /// disk shows an earlier run's write, and 16 random bytes, with one program besides the shell
    /// (each exec costs seconds where guest kernels are emulated).
    /// `disk=fresh` unless an earlier run's write to the root disk is visible.
    static let probe = "read -r m < /marker; read -r h < /proc/sys/kernel/hostname; if [ -e /written ]; then d=seen; else d=fresh; fi; echo x > /written; set -- $(od -An -N16 -tx1 /dev/urandom); IFS=; echo \"marker=$m host=$h disk=$d random=$*\""

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
    private static let restoredImage = "warm start: restored the image snapshot"
    private static let madeImage = "made the image snapshot"
    private static let warmingUp = "booting it once to make a warm-start snapshot"

    private func vireo(_ arguments: [String]) throws -> (Int32?, String) {
        let process = try GuestProcess(arguments: arguments)
        process.closeInput()
        let status = process.waitForExit(timeout: 120)
        return (status, process.output + process.errorOutput)
    }

    /// The image snapshots in the cache, as "<base>/<key>".
    private func imageSnapshots(_ state: String) -> [String] {
        let root = state + "/images/warm/images"
        let bases = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return bases.flatMap { base in
            ((try? FileManager.default.contentsOfDirectory(atPath: root + "/" + base)) ?? [])
                .filter { !$0.hasPrefix(".") && !$0.hasSuffix(".lock") }.map { base + "/" + $0 }
        }.sorted()
    }

    /// The image snapshot ("<base>/<key>") whose restore `result` reported.
    private func restoredSnapshot(_ result: Run, among snapshots: [String]) -> String? {
        snapshots.first { result.errors.contains(ImageWarmStartTests.restoredImage + " " + ($0.split(separator: "/").last?.prefix(12) ?? "?")) }
    }

    private func check(_ label: String, _ result: Run, marker: String, says expected: [String], not unexpected: [String] = []) {
        #expect(result.status == 0 && result.fields["marker"] == marker, "run \(label): \(result.status ?? -1) \(result.output) \(result.errors.suffix(3000))")
        #expect(result.fields["disk"] == "fresh", "run \(label) saw an earlier run's write: \(result.output)")
        #expect(result.fields["random"]?.count == 32, "run \(label) output: \(result.output)")
        for text in expected { #expect(result.errors.contains(text), "run \(label) did not say '\(text)': \(result.errors.suffix(3000))") }
        for text in unexpected { #expect(!result.errors.contains(text), "run \(label) said '\(text)': \(result.errors.suffix(3000))") }
        TestEnvironment.log("warm start: run \(label) to program output \(String(format: "%.2f", result.firstOutput)) s")
    }

    @Test func twoImagesRestoreOneSnapshotWithTheirOwnFilesRandomBytesAndHostnames() throws {
        let dir = try TestEnvironment.freshDirectory("vireo-warm").path
        try image(at: dir + "/a", marker: "image-a")
        try image(at: dir + "/b", marker: "image-b")
        let state = dir + "/state"

        // The warm-up: one boot to the init's ready point and a snapshot; this run restores it and,
        // on the way, makes image a's own snapshot.
        let first = try run([], image: dir + "/a", state: state)
        check("a1", first, marker: "image-a", says: [ImageWarmStartTests.warmingUp, ImageWarmStartTests.restored, ImageWarmStartTests.madeImage])
        let generic = try FileManager.default.contentsOfDirectory(atPath: state + "/images/warm")
            .filter { !$0.hasPrefix(".") && !$0.hasSuffix(".lock") && $0 != "images" }
        #expect(generic.count == 1, "warm cache: \(generic)")
        let genericPrefix = String(generic.first?.prefix(12) ?? "?")
        #expect(imageSnapshots(state).count == 1, "image snapshots: \(imageSnapshots(state))")

        // Image b's first run restores the generic snapshot (no boot) and makes b's snapshot; later
        // runs of each image restore their own image snapshot, each with its own copy of the disk.
        let b1 = try run([], image: dir + "/b", state: state)
        check("b1", b1, marker: "image-b", says: [ImageWarmStartTests.restored + " " + genericPrefix, ImageWarmStartTests.madeImage],
              not: [ImageWarmStartTests.warmingUp])
        let snapshots = imageSnapshots(state)
        #expect(snapshots.count == 2, "image snapshots: \(snapshots)")
        let a2 = try run([], image: dir + "/a", state: state)
        let b2 = try run([], image: dir + "/b", state: state)
        let a3 = try run([], image: dir + "/a", state: state)
        for (label, result, marker) in [("a2", a2, "image-a"), ("b2", b2, "image-b"), ("a3", a3, "image-a")] {
            check(label, result, marker: marker, says: [ImageWarmStartTests.restoredImage],
                  not: [ImageWarmStartTests.warmingUp, ImageWarmStartTests.restored, ImageWarmStartTests.madeImage])
        }
        #expect(imageSnapshots(state) == snapshots, "image snapshots changed: \(imageSnapshots(state))")
        // Clones of one snapshot: each its own random bytes and hostname (none the warm-up's).
        let runs = [first, b1, a2, b2, a3]
        let randoms = runs.compactMap { $0.fields["random"] }
        let hosts = runs.compactMap { $0.fields["host"] }
        #expect(Set(randoms).count == runs.count, "random bytes: \(randoms)")
        #expect(Set(hosts).count == runs.count && hosts.allSatisfy { $0.hasPrefix("vireo-") }, "hostnames: \(hosts)")

        // A corrupted image snapshot is removed with one line; the run restores the generic one and makes it anew.
        let aSnapshot = restoredSnapshot(a2, among: snapshots), bSnapshot = restoredSnapshot(b2, among: snapshots)
        #expect(aSnapshot != nil && bSnapshot != nil && aSnapshot != bSnapshot, "a: \(aSnapshot ?? "-"), b: \(bSnapshot ?? "-"), cached: \(snapshots)")
        let stateFile = "\(state)/images/warm/images/\(bSnapshot ?? "?")/state.bin"
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: stateFile)))
        bytes[bytes.count / 2] ^= 0x40
        try Data(bytes).write(to: URL(fileURLWithPath: stateFile))
        let b3 = try run([], image: dir + "/b", state: state)
        check("b3", b3, marker: "image-b", says: ["the cached image snapshot", "is unusable", "restoring the generic warm-start snapshot",
                                                  ImageWarmStartTests.restored + " " + genericPrefix, ImageWarmStartTests.madeImage])

        // `vireo images rm` takes the image's snapshots with its base.
        let (removed, removeOutput) = try vireo(["images", "rm", "--state-dir", state, dir + "/a"])
        #expect(removed == 0, "images rm: \(removeOutput)")
        #expect(imageSnapshots(state) == [bSnapshot ?? "?"], "image snapshots after removing a: \(imageSnapshots(state))")

        // A corrupted generic snapshot is refused by its checksum, removed, and the run boots cold instead.
        let genericState = "\(state)/images/warm/\(generic.first ?? "?")/state.bin"
        bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: genericState)))
        bytes[bytes.count / 2] ^= 0x40
        try Data(bytes).write(to: URL(fileURLWithPath: genericState))
        let fallback = try run([], image: dir + "/a", state: state)
        #expect(fallback.status == 0 && fallback.fields["marker"] == "image-a", "fallback: \(fallback.status ?? -1) \(fallback.output) \(fallback.errors.suffix(3000))")
        #expect(fallback.errors.contains("warm-start snapshot") && fallback.errors.contains("is unusable") && fallback.errors.contains("booting cold"),
                "stderr: \(fallback.errors.suffix(3000))")
        #expect(!fallback.errors.contains(ImageWarmStartTests.restored) && !fallback.errors.contains(ImageWarmStartTests.restoredImage),
                "stderr: \(fallback.errors.suffix(3000))")
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

import Foundation
import Images
import Testing

/// `vireo run --image`, `vireo pull` and `vireo images` end to end: the real binary, real guests
/// booting images the tests build from busybox-static. Two boots (one per image, in parallel);
/// everything that needs no guest (refusals, archives, the cache) runs without one.
@Suite(.enabled { try TestEnvironment.available("ImageRunTests", .kvm, .kernel, .executable("/bin/busybox"), .executable("/usr/sbin/mke2fs")) })
struct ImageRunTests {
    /// Runs `vireo ARGS` to completion; (status, stdout, stderr).
    private func vireo(_ arguments: [String], timeout: Double = 120) throws -> (Int32?, String, String) {
        let process = try GuestProcess(arguments: arguments, environment: ["VIREO_IMAGE_INITRAMFS": try TestImages.initramfs()])
        process.closeInput()
        let status = process.waitForExit(timeout: timeout)
        return (status, process.output, process.errorOutput)
    }

    private func scratch(_ name: String) throws -> String { try TestEnvironment.freshDirectory("vireo-images-\(name)").path }

    @Test func oneLayerImageRunsTheCommandWithOverridesAndExitsWithItsStatus() throws {
        let dir = try scratch("one")
        try TestImages.oneLayer(at: dir + "/image")
        let state = dir + "/state"
        let started = Date()
        let guest = try GuestProcess(arguments: [
            "run", "--memory", "256M", "--state-dir", state, "--env", "EXTRA=from-cli", "--workdir", "/tmp", "--user", "1000",
            "--image", dir + "/image", "--", "sh", "-c", "echo hi; echo \"extra=$EXTRA greeting=$GREETING cwd=$(pwd) uid=$(id -u) gid=$(id -g)\"; exit 7",
        ], environment: ["VIREO_IMAGE_INITRAMFS": try TestImages.initramfs()])
        defer { guest.stop() }
        guest.closeInput()

        // While the VM runs, its image cannot be removed.
        var runDirectory: String?
        for _ in 0..<600 where runDirectory == nil && guest.process.isRunning {
            runDirectory = (try? FileManager.default.contentsOfDirectory(atPath: state + "/images/runs"))?.first
            usleep(100_000)
        }
        #expect(runDirectory != nil, "no run directory appeared; stderr: \(guest.errorOutput)")
        let (removeStatus, _, removeError) = try vireo(["images", "rm", "--state-dir", state, dir + "/image"])
        #expect(removeStatus == 2 && removeError.contains("in use"), "rm while running: \(removeStatus ?? -1) \(removeError)")

        let status = guest.waitForExit(timeout: 600)
        let seconds = Date().timeIntervalSince(started)
        TestEnvironment.log("one-layer image: program output and exit after \(Int(seconds)) s (cold: unpack + boot)")
        let output = guest.output
        #expect(status == 7, "exit status \(status ?? -1); stdout: \(output.suffix(2000)) stderr: \(guest.errorOutput.suffix(2000))")
        #expect(output.hasPrefix("hi\n"), "the program's output comes first, without boot noise: \(output.prefix(500))")
        #expect(output.contains("extra=from-cli greeting=hello cwd=/tmp uid=1000 gid=1000\n"), "output: \(output)")
        // The run's overlay and config disk are gone; the base stays cached, and then can be removed.
        #expect((try? FileManager.default.contentsOfDirectory(atPath: state + "/images/runs"))?.isEmpty == true)
        let (listStatus, list, _) = try vireo(["images", "--state-dir", state])
        #expect(listStatus == 0 && list.contains(dir + "/image") && list.contains("yes"), "images: \(list)")
        let (rmStatus, rmOutput, rmError) = try vireo(["images", "rm", "--state-dir", state, dir + "/image"])
        #expect(rmStatus == 0, "rm: \(rmOutput) \(rmError)")
        #expect((try FileManager.default.contentsOfDirectory(atPath: state + "/images/bases")).filter { $0.hasSuffix(".ext4") }.isEmpty)
        #expect((try FileManager.default.contentsOfDirectory(atPath: state + "/images/blobs/sha256")).isEmpty)
    }

    @Test func threeLayerImageHonoursItsConfigAndTheLayersTreeAndGetsSignals() throws {
        let dir = try scratch("three")
        try TestImages.threeLayers(at: dir + "/image")
        let guest = try GuestProcess(arguments: ["run", "--memory", "256M", "--state-dir", dir + "/state", "--image", dir + "/image"],
                                     environment: ["VIREO_IMAGE_INITRAMFS": try TestImages.initramfs()])
        defer { guest.stop() }
        guest.closeInput()
        let ready = guest.waitForOutput("ready\n", timeout: 600)
        #expect(ready, "the program never got ready; stdout: \(guest.output.suffix(2000)) stderr: \(guest.errorOutput.suffix(2000))")
        // SIGTERM to vireo reaches the program (its trap exits 42), and that is vireo's status.
        if ready { kill(guest.process.processIdentifier, SIGTERM) }
        let status = guest.waitForExit(timeout: 120)
        let output = guest.output
        #expect(status == 42 && output.contains("got-TERM\n"), "exit status \(status ?? -1); stdout: \(output.suffix(2000)) stderr: \(guest.errorOutput.suffix(2000))")
        // ENTRYPOINT+CMD ran as the config's User in its WorkingDir with its Env.
        #expect(output.contains("cwd=/data uid=1000 gid=1000 mode=three\n"), "output: \(output)")
        // What the layers say: gone.txt whited out; opq emptied of layer 1's old1 and sub/ (opaque)
        // but keeping layer 2's new; a hard link (2 links, one inode), a symlink; owners and modes.
        let tree = output.split(separator: "\n").filter { $0.hasPrefix("tree ") }.map { String($0.dropFirst(5)) }
        #expect(tree == [
            "/data|directory|2|0:0|755|4096",
            "/data/added.txt|regular file|1|0:50|640|17",
            "/data/hard|regular file|2|0:0|644|5",
            "/data/keep.txt|regular file|2|0:0|644|5",
            "/data/sym|symbolic link|1|0:0|777|8",
            "/home/app|directory|2|1000:1000|750|4096",
            "/opq|directory|2|0:0|755|4096",
            "/opq/new|regular file|1|1000:1000|600|5",
        ], "tree: \(tree.joined(separator: "\n")) output: \(output)")
        let link = output.split(separator: "\n").first { $0.hasPrefix("link=") }.map(String.init) ?? ""
        let inodes = link.split(separator: " ").dropFirst(2)
        #expect(link.hasPrefix("link=keep.txt inodes= ") && inodes.count == 2 && inodes.first == inodes.last, "link line: \(link)")
    }

    @Test func corruptedBlobIsRefusedByDigest() throws {
        let dir = try scratch("corrupt")
        try TestImages.oneLayer(at: dir + "/image")
        let blobs = dir + "/image/blobs/sha256"
        let layer = try #require(try FileManager.default.contentsOfDirectory(atPath: blobs)
            .max { (try? FileManager.default.attributesOfItem(atPath: "\(blobs)/\($0)")[.size] as? Int ?? 0) ?? 0 < (try? FileManager.default.attributesOfItem(atPath: "\(blobs)/\($1)")[.size] as? Int ?? 0) ?? 0 })
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(blobs)/\(layer)")))
        bytes[bytes.count / 2] ^= 0x55
        try Data(bytes).write(to: URL(fileURLWithPath: "\(blobs)/\(layer)"))
        let (status, _, errors) = try vireo(["pull", "--state-dir", dir + "/state", dir + "/image"])
        #expect(status == 2 && errors.contains("does not match its digest"), "status \(status ?? -1): \(errors)")
        // Nothing of it reached the cache, and nothing half-written was left behind.
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/state/images/blobs/sha256/\(layer)"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/state/images/tmp").isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/state/images/refs").isEmpty)
    }

    @Test func layerEscapingTheRootIsRefused() throws {
        let dir = try scratch("escape")
        let target = dir + "/escaped-file"
        try TestImages.escaping(at: dir + "/image", target: target)
        let (status, _, errors) = try vireo(["pull", "--state-dir", dir + "/state", dir + "/image"])
        #expect(status == 2 && errors.contains("'..'"), "status \(status ?? -1): \(errors)")
        #expect(!FileManager.default.fileExists(atPath: target))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/state/images/bases").filter { !$0.hasPrefix(".") }.isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/state/images/tmp").isEmpty)
    }

    @Test func otherPlatformsAreRefused() throws {
        let dir = try scratch("arm")
        var writer = LayoutWriter(configuration: .init(Cmd: ["/bin/sh"]))
        writer.architecture = "arm64"
        try writer.write(layers: [TestImages.layer { $0.add(TestImages.directory("etc/")) }], to: dir + "/image")
        let (status, _, errors) = try vireo(["pull", "--state-dir", dir + "/state", dir + "/image"])
        #expect(status == 2 && errors.contains("linux/amd64"), "status \(status ?? -1): \(errors)")
    }

    @Test func ociAndDockerArchivesImportAsTheSameImage() throws {
        let dir = try scratch("archives")
        try TestImages.oneLayer(at: dir + "/image")
        let state = dir + "/state"
        let (status, output, errors) = try vireo(["pull", "--state-dir", state, dir + "/image"])
        #expect(status == 0, "pull layout: \(errors)")
        let id = try #require(output.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) })

        // oci-archive: the layout directory as a tar.
        var oci = TarWriter()
        let files = FileManager.default.enumerator(atPath: dir + "/image")?.allObjects as? [String] ?? []
        for path in files.sorted() {
            var isDirectory: ObjCBool = false
            FileManager.default.fileExists(atPath: dir + "/image/" + path, isDirectory: &isDirectory)
            if isDirectory.boolValue { oci.add(TestImages.directory(path + "/")) } else {
                oci.add(TestImages.file(path), data: [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/image/" + path))))
            }
        }
        oci.finish()
        try Data(oci.bytes).write(to: URL(fileURLWithPath: dir + "/image.oci.tar"))
        let (ociStatus, ociOutput, ociErrors) = try vireo(["pull", "--state-dir", state, dir + "/image.oci.tar"])
        #expect(ociStatus == 0 && ociOutput.contains(id), "oci-archive: \(ociOutput) \(ociErrors)")

        // docker-archive: manifest.json, the config, and the layer uncompressed (as `docker save` writes).
        let configDigest = try #require(Digest(id))
        let config = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/image/blobs/sha256/\(configDigest.hex)"))
        let layer = try TestImages.layer(TestImages.busyboxLayer)
        var docker = TarWriter()
        docker.add(TestImages.file("\(configDigest.hex).json"), data: [UInt8](config))
        docker.add(TestImages.directory("layer1/"))
        docker.add(TestImages.file("layer1/layer.tar"), data: layer)
        docker.add(TestImages.file("manifest.json"), data: Array(#"[{"Config":"\#(configDigest.hex).json","RepoTags":["busybox:test"],"Layers":["layer1/layer.tar"]}]"#.utf8))
        docker.finish()
        try Data(docker.bytes).write(to: URL(fileURLWithPath: dir + "/image.docker.tar"))
        let (dockerStatus, dockerOutput, dockerErrors) = try vireo(["pull", "--state-dir", state, dir + "/image.docker.tar"])
        #expect(dockerStatus == 0 && dockerOutput.contains(id), "docker-archive: \(dockerOutput) \(dockerErrors)")

        // Three references, one image: one base, listed three times.
        let (_, list, _) = try vireo(["images", "--state-dir", state])
        #expect(list.split(separator: "\n").filter { $0.hasPrefix(configDigest.hex.prefix(12)) }.count == 3, "images: \(list)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: state + "/images/bases").filter { $0.hasSuffix(".ext4") }.count == 1)
        let (_, usage, _) = try vireo(["images", "du", "--state-dir", state])
        #expect(usage.contains("bases") && usage.contains("total"), "\(usage)")
    }
}

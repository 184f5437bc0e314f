import Foundation
import Images
import Testing

/// `vireo pull` from a real registry (Debian's docker-registry on loopback, plain HTTP) the test
/// pushes a busybox image to with skopeo: by tag, by digest, and a missing tag refused. No guest.
@Suite(.enabled { try TestEnvironment.available("ImageRegistryTests", .executable("/usr/bin/skopeo"), .executable("/usr/bin/docker-registry"), .executable("/bin/busybox"), .executable("/usr/sbin/mke2fs")) })
struct ImageRegistryTests {
    private func run(_ executable: String, _ arguments: [String]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    private func vireo(_ arguments: [String]) throws -> (Int32?, String, String) {
        let process = try GuestProcess(arguments: arguments)
        process.closeInput()
        let status = process.waitForExit(timeout: 120)
        return (status, process.output, process.errorOutput)
    }

    /// A registry on a free loopback port; returns the process and its host:port.
    private func startRegistry(in dir: String) throws -> (Process, String) {
        for _ in 0..<20 {
            let port = Int.random(in: 20000...60000)
            let config = """
                version: 0.1
                log:
                  level: error
                storage:
                  filesystem:
                    rootdirectory: \(dir)/registry
                http:
                  addr: 127.0.0.1:\(port)
                """
            try Data(config.utf8).write(to: URL(fileURLWithPath: dir + "/registry.yml"))
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/docker-registry")
            process.arguments = ["serve", dir + "/registry.yml"]
            process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            process.standardError = FileHandle(forWritingAtPath: "/dev/null")
            try process.run()
            for _ in 0..<100 where process.isRunning {
                if (try? run("/usr/bin/skopeo", ["list-tags", "--tls-verify=false", "docker://127.0.0.1:\(port)/none"]))?.1.contains("connection refused") == false {
                    return (process, "127.0.0.1:\(port)")
                }
                usleep(100_000)
            }
            if process.isRunning { process.terminate(); process.waitUntilExit() }
        }
        throw ImageError("could not start docker-registry on a free port")
    }

    @Test func pullsByTagAndByDigestAndRefusesAMissingTag() throws {
        let dir = try TestEnvironment.freshDirectory("vireo-images-registry").path
        try TestImages.oneLayer(at: dir + "/image")
        let (registry, address) = try startRegistry(in: dir)
        defer { registry.terminate(); registry.waitUntilExit() }
        let (pushed, pushOutput) = try run("/usr/bin/skopeo", ["copy", "--quiet", "--dest-tls-verify=false", "oci:" + dir + "/image",
                                                               "docker://\(address)/busybox:test"])
        try #require(pushed == 0, "skopeo push: \(pushOutput)")
        let index = try JSONDecoder().decode(ImageIndex.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/image/index.json")))
        let manifestDigest = try #require(index.manifests.first?.digest)
        let manifest = try JSONDecoder().decode(ImageManifest.self, from: Data(contentsOf: URL(fileURLWithPath:
            dir + "/image/blobs/sha256/" + manifestDigest.dropFirst(7))))
        let state = dir + "/state"

        let (tagStatus, tagOutput, tagErrors) = try vireo(["pull", "--state-dir", state, "--insecure-registry", "\(address)/busybox:test"])
        #expect(tagStatus == 0 && tagOutput.contains(manifest.config.digest), "by tag: \(tagOutput) \(tagErrors)")
        let byDigest = "\(address)/busybox@\(manifestDigest)"
        let (digestStatus, digestOutput, digestErrors) = try vireo(["pull", "--state-dir", state, "--insecure-registry", byDigest])
        #expect(digestStatus == 0 && digestOutput.contains(manifest.config.digest), "by digest: \(digestOutput) \(digestErrors)")
        // One image under two references: one base.
        let (_, list, _) = try vireo(["images", "--state-dir", state])
        #expect(list.contains("\(address)/busybox:test") && list.contains(byDigest), "images: \(list)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: state + "/images/bases").filter { $0.hasSuffix(".ext4") }.count == 1)

        let (missingStatus, _, missingErrors) = try vireo(["pull", "--state-dir", state, "--insecure-registry", "\(address)/busybox:nope"])
        #expect(missingStatus == 2 && missingErrors.contains("pulling \(address)/busybox:nope failed"), "missing tag: \(missingErrors)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: state + "/images/tmp").isEmpty)
    }
}

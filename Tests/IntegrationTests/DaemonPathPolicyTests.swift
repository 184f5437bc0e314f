import Foundation
import Manager
import Testing

extension DaemonTests {
    /// Issue 12, finding 3: the daemon opens (as root) only files under its image roots, so a
    /// socket user cannot hand a VM a root-only file, through a plain path, `..` or a symbolic link.
    @Suite struct PathPolicy {
        /// A root-only file and directory outside every root of `daemon`.
        private func outsideFiles() throws -> (directory: String, secret: String) {
            let directory = "/tmp/vireo-outside-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let secret = directory + "/secret"
            try Data("TOP-SECRET-BYTES".utf8 + [UInt8](repeating: 0, count: 4080)).write(to: URL(fileURLWithPath: secret))
            chmod(secret, 0o600)
            return (directory, secret)
        }

        private func expectRefused(_ reply: HTTPReply, field: String, path: String, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(reply.status == 422, "\(field): \(reply.status) \(reply.text)", sourceLocation: sourceLocation)
            #expect(reply.json?["error"]?["field"]?.stringValue == field, "\(reply.text)", sourceLocation: sourceLocation)
            #expect(reply.text.contains(path) && reply.text.contains("image roots"), "\(reply.text)", sourceLocation: sourceLocation)
            #expect(!reply.text.contains("TOP-SECRET"), sourceLocation: sourceLocation)
        }

        @Test func filesOutsideTheRootsAreRefusedAndInsideAccepted() throws {
            let counter = try #require(TestEnvironment.micro("counter"))
            let daemon = try DaemonProcess()
            defer { daemon.stop() }
            let (outside, secret) = try outsideFiles()
            defer { try? FileManager.default.removeItem(atPath: outside) }
            let link = daemon.directory + "/link.img"
            symlink(secret, link)
            let dotdot = daemon.directory + "/../" + (outside as NSString).lastPathComponent + "/secret"
            let relativeLink = daemon.directory + "/up"
            symlink("..", relativeLink)

            func create(_ fields: [(key: String, value: JSONValue)]) throws -> HTTPReply {
                try daemon.request("POST", "/vms", json: .object([("name", .string("p"))] + fields))
            }
            func disk(_ path: String) -> [(key: String, value: JSONValue)] {
                [("kernel", .string(counter)), ("disks", .array([.object([("path", .string(path))])]))]
            }
            for path in [secret, link, dotdot, relativeLink + "/" + (outside as NSString).lastPathComponent + "/secret"] {
                expectRefused(try create(disk(path)), field: "disks[0].path", path: path)
                #expect(try daemon.request("GET", "/info").status == 200, "the daemon keeps answering")
            }
            expectRefused(try create([("kernel", .string(secret))]), field: "kernel", path: secret)
            expectRefused(try create([("kernel", .string(link))]), field: "kernel", path: link)
            expectRefused(try create([("kernel", .string(counter)), ("initrd", .string(secret))]), field: "initrd", path: secret)
            expectRefused(try create([("restore", .string(outside))]), field: "restore", path: outside)
            let overlay = outside + "/new.ovl"
            expectRefused(try create([("kernel", .string(counter)),
                                      ("disks", .array([.object([("path", .string(overlay)), ("backing", .string(counter))])]))]),
                          field: "disks[0].path", path: overlay)
            #expect(try daemon.request("GET", "/vms").json?.arrayValue?.isEmpty == true)

            // Inside a root: a copy of the kernel, a disk, and a link that stays inside.
            let kernel = daemon.directory + "/kernel"
            try FileManager.default.copyItem(atPath: counter, toPath: kernel)
            let image = daemon.directory + "/disk.img"
            try Data(count: 4096).write(to: URL(fileURLWithPath: image))
            symlink("disk.img", daemon.directory + "/alias.img")
            let created = try daemon.request("POST", "/vms", json: .object([
                ("name", .string("p")), ("kernel", .string(kernel)), ("memoryMiB", .int(32)),
                ("disks", .array([.object([("path", .string(daemon.directory + "/alias.img"))])])),
            ]))
            #expect(created.status == 201, "\(created.text)")
            #expect(created.json?["disks"]?.arrayValue?.first?["path"]?.stringValue == image, "links are resolved: \(created.text)")

            // A snapshot target outside the roots.
            try daemon.action("p", "start")
            let target = outside + "/snap"
            expectRefused(try daemon.request("POST", "/vms/p/snapshot", json: .object([("path", .string(target))])),
                          field: "path", path: target)
            #expect(!FileManager.default.fileExists(atPath: target))
            _ = try? daemon.request("POST", "/vms/p/kill")
        }

        @Test func aLinkPlantedAfterCreateIsRefusedAtStart() throws {
            let counter = try #require(TestEnvironment.micro("counter"))
            let daemon = try DaemonProcess()
            defer { daemon.stop() }
            let (outside, _) = try outsideFiles()
            defer { try? FileManager.default.removeItem(atPath: outside) }
            let sub = daemon.directory + "/sub"
            try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: counter, toPath: sub + "/kernel")
            try FileManager.default.copyItem(atPath: counter, toPath: outside + "/kernel")
            try daemon.create("late", kernel: sub + "/kernel", [("memoryMiB", .int(32))])
            try FileManager.default.removeItem(atPath: sub)
            symlink(outside, sub)
            expectRefused(try daemon.request("POST", "/vms/late/start"), field: "kernel", path: sub + "/kernel")
            #expect(try daemon.request("GET", "/info").status == 200)
        }

        @Test func rootSlashAllowsAnyPath() throws {
            let counter = try #require(TestEnvironment.micro("counter"))
            let daemon = try DaemonProcess(extraArguments: ["--image-root", "/"])
            defer { daemon.stop() }
            let (outside, secret) = try outsideFiles()
            defer { try? FileManager.default.removeItem(atPath: outside) }
            try daemon.create("any", kernel: counter, [("disks", .array([.object([("path", .string(secret))])]))])
        }
    }
}

import Foundation
import Manager
import Testing
import VMM

/// Issue 12, finding 9: many NICs give a clear error (not SIGILL), the API's device limits are the
/// VMM's, and `vireo serve --socket FILE` never deletes a regular file.
@Suite struct SmallHardeningTests {
    @Test func theAPIAndTheVMMShareOneSlotLimit() {
        #expect(VMLimits.virtioSlots == VMConfig.virtioSlots)
        #expect(VMLimits.disks.upperBound <= VMConfig.virtioSlots && VMLimits.nets.upperBound <= VMConfig.virtioSlots)
    }

    @Test func manyNICsAreAClearError() throws {
        let guest = try GuestProcess(arguments: ["run", "--kernel", "/nonexistent"] + Array(repeating: ["--net", "user"], count: 171).flatMap { $0 })
        defer { guest.stop() }
        let status = guest.waitForExit(timeout: 20)
        #expect(status == 2, "status \(String(describing: status)): \(guest.errorOutput)")
        #expect(guest.errorOutput.contains("virtio device slots"), "\(guest.errorOutput)")
    }

    @Test func serveNeverDeletesARegularFileAsItsSocket() throws {
        let directory = "/tmp/vireo-serve-file-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let precious = directory + "/precious"
        try Data("do not delete\n".utf8).write(to: URL(fileURLWithPath: precious))
        let daemon = try GuestProcess(arguments: ["serve", "--socket", precious, "--state-dir", directory + "/state"])
        defer { daemon.stop() }
        let status = daemon.waitForExit(timeout: 20)
        #expect(status != nil && status != 0, "the daemon should refuse: \(daemon.errorOutput)")
        #expect(daemon.errorOutput.contains("not a socket"), "\(daemon.errorOutput)")
        #expect((try? String(contentsOfFile: precious, encoding: .utf8)) == "do not delete\n")
    }
}

extension DaemonTests {
    /// The API refuses more disks and NICs than the VMM has slots, with the field named.
    @Suite struct DeviceSlots {
        @Test func tooManyDevicesAreRefused() throws {
            let counter = try #require(TestEnvironment.micro("counter"))
            let daemon = try DaemonProcess()
            defer { daemon.stop() }
            let nets = JSONValue.array(Array(repeating: .object([("mode", .string("user"))]), count: 8))
            let images = try (0..<3).map { index -> String in
                let path = "\(daemon.directory)/disk\(index).img"
                try Data(count: 4096).write(to: URL(fileURLWithPath: path))
                return path
            }
            let disks = JSONValue.array(images.map { .object([("path", .string($0))]) })
            let reply = try daemon.request("POST", "/vms", json: .object([("name", .string("many")), ("kernel", .string(counter)),
                                                                          ("nets", nets), ("disks", disks)]))
            #expect(reply.status == 422 && reply.text.contains("virtio slots"), "\(reply.status) \(reply.text)")
            #expect(try daemon.request("GET", "/info").status == 200)
        }
    }
}

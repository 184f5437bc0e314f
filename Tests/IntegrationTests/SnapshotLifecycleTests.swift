import Foundation
import Manager
import Testing

/// Issue 11's snapshot sequence with micro-guests: a pause that cannot park a vCPU fails and leaves
/// the VM running; a snapshot restored with a different device set is refused, naming the device.
@Suite(.enabled { try TestEnvironment.available("SnapshotLifecycleTests", .kvm, .micro("counter")) })
struct SnapshotLifecycleTests {
    private let scratch: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("vireo-lifecycle-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    private func lastCount(_ text: String) -> Int {
        text.split(whereSeparator: \.isNewline).compactMap { $0.hasPrefix("count=") ? Int($0.dropFirst(6)) : nil }.last ?? -1
    }

    @Test func pauseThatCannotParkAVCPUFailsAndTheVMKeepsRunning() throws {
        let kernel = try #require(TestEnvironment.micro("counter"))
        let socket = scratch.appendingPathComponent("stuck.sock").path
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin", "--api-socket", socket],
                                     environment: ["VIREO_TEST_VCPU_REFUSES_PARK": "0"])
        defer { guest.stop() }
        #expect(guest.waitForOutput("count=3", timeout: 20))
        UnixSocket.waitForSocket(socket)
        let pause = try UnixSocket.request(socket, "pause", timeout: 30)
        #expect(pause.contains("\"ok\":false") && pause.contains("did not park") && pause.contains("\"state\":\"running\""), "pause: \(pause)")
        let status = try UnixSocket.request(socket, "status", timeout: 30)
        #expect(status.contains("\"state\":\"running\""), "status: \(status)")
        let snapshot = try UnixSocket.request(socket, "snapshot \(scratch.appendingPathComponent("never").path)")
        #expect(snapshot.contains("\"ok\":false"), "snapshot: \(snapshot)")
        let before = lastCount(guest.output)
        #expect(guest.waitForOutput("count=\(before + 2)", timeout: 20), "the guest stopped counting after the failed pause")
        _ = try? UnixSocket.request(socket, "kill", timeout: 30)
        _ = guest.waitForExit(timeout: 10)
    }

    @Test func restoreWithADifferentDeviceSetIsRefusedNamingTheDevice() throws {
        let kernel = try #require(TestEnvironment.micro("counter"))
        let socket = scratch.appendingPathComponent("vsock-api.sock").path
        let vsock = scratch.appendingPathComponent("v.sock").path
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin", "--api-socket", socket,
                                                 "--vsock", "cid=7,socket=\(vsock)"])
        defer { guest.stop() }
        #expect(guest.waitForOutput("count=3", timeout: 20))
        UnixSocket.waitForSocket(socket)
        #expect(try UnixSocket.request(socket, "pause", timeout: 30).contains("\"state\":\"paused\""))
        let directory = scratch.appendingPathComponent("with-vsock").path
        let reply = try UnixSocket.request(socket, "snapshot \(directory)", timeout: 30)
        #expect(reply.contains("\"ok\":true"), "snapshot: \(reply)")
        _ = try? UnixSocket.request(socket, "kill", timeout: 30)
        _ = guest.waitForExit(timeout: 10)

        let balloon = try GuestProcess(arguments: ["run", "--restore", directory, "--no-stdin", "--balloon"])
        defer { balloon.stop() }
        #expect(balloon.waitForExit(timeout: 20) == 2)
        #expect(balloon.errorOutput.contains("virtio-vsock (type 19, cid=7)") && balloon.errorOutput.contains("virtio-balloon"),
                "stderr: \(balloon.errorOutput)")

        let otherCID = try GuestProcess(arguments: ["run", "--restore", directory, "--no-stdin",
                                                    "--vsock", "cid=8,socket=\(scratch.appendingPathComponent("w.sock").path)"])
        defer { otherCID.stop() }
        #expect(otherCID.waitForExit(timeout: 20) == 2)
        #expect(otherCID.errorOutput.contains("cid=7") && otherCID.errorOutput.contains("cid=8"), "stderr: \(otherCID.errorOutput)")

        let same = try GuestProcess(arguments: ["run", "--restore", directory, "--no-stdin",
                                                "--vsock", "cid=7,socket=\(scratch.appendingPathComponent("x.sock").path)"])
        defer { same.stop() }
        #expect(same.waitForOutput("count=", timeout: 20), "stderr: \(same.errorOutput)")
    }
}

extension SnapshotLifecycleTests {
    @Test func daemonRefusesASnapshotWithADeviceItCannotConfigure() throws {
        let kernel = try #require(TestEnvironment.micro("counter"))
        // The snapshot goes under the daemon's directory: one of its image roots.
        let daemon = try DaemonProcess()
        defer { daemon.stop() }
        let socket = scratch.appendingPathComponent("daemon-src.sock").path
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin", "--api-socket", socket,
                                                 "--vsock", "cid=9,socket=\(scratch.appendingPathComponent("d.sock").path)"])
        defer { guest.stop() }
        #expect(guest.waitForOutput("count=2", timeout: 20))
        UnixSocket.waitForSocket(socket)
        #expect(try UnixSocket.request(socket, "pause", timeout: 30).contains("\"state\":\"paused\""))
        let directory = daemon.directory + "/daemon-vsock"
        #expect(try UnixSocket.request(socket, "snapshot \(directory)", timeout: 30).contains("\"ok\":true"))
        _ = try? UnixSocket.request(socket, "kill", timeout: 30)
        _ = guest.waitForExit(timeout: 10)

        let reply = try daemon.request("POST", "/vms", json: .object([("name", .string("clone")), ("restore", .string(directory))]))
        #expect(reply.status == 422 && reply.errorMessage.contains("virtio-vsock (type 19, cid=9)"), "\(reply.status) \(reply.text)")
        #expect(try daemon.request("GET", "/vms/clone").status == 404, "nothing half-created")
    }
}

import Foundation
import Testing

/// The "device" seccomp role of virtio workers: a worker that tries to open a path is stopped and
/// the reporter names the device's thread.
@Suite(.enabled { try TestEnvironment.available("DeviceSeccompTests", .kvm, .micro("counter")) })
struct DeviceSeccompTests {
    @Test(arguments: [("virtio-rng", "openat", 257, ["--rng"]), ("virtio-blk0", "socket", 41, []), ("virtio-rng", "clone", 56, ["--rng"])])
    func virtioWorkerSyscallOutsideItsRoleIsNamed(device: String, syscall: String, number: Int, extra: [String]) throws {
        let kernel = try #require(TestEnvironment.micro("counter"))
        let scratch = try TestEnvironment.freshDirectory("vireo-device-seccomp-\(device)-\(syscall)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let disk = scratch.appendingPathComponent("disk.img").path
        FileManager.default.createFile(atPath: disk, contents: Data(count: 1 << 20))
        let diskArguments = extra.isEmpty ? ["--disk", disk] : extra
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin"] + diskArguments,
                                     environment: ["VIREO_TEST_DEVICE_SYSCALL": "\(device):\(syscall)"])
        defer { guest.stop() }
        let status = guest.waitForExit(timeout: 30)
        #expect(status == 159, "stderr: \(guest.errorOutput)")
        #expect(guest.errorOutput.contains("seccomp denied syscall \(syscall) (nr \(number)) in the \(device) device thread"),
                "stderr: \(guest.errorOutput)")
    }

    @Test func allowedCallInAWorkerPasses() throws {
        // getpid is in every role: the hook reports it went through and the VM keeps running.
        let kernel = try #require(TestEnvironment.micro("counter"))
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin", "--rng"],
                                     environment: ["VIREO_TEST_DEVICE_SYSCALL": "virtio-rng:getpid"])
        defer { guest.stop() }
        #expect(guest.waitForOutput("count=3", timeout: 20), "stderr: \(guest.errorOutput)")
        #expect(guest.errorOutput.contains("test hook: getpid returned"), "stderr: \(guest.errorOutput)")
    }
}

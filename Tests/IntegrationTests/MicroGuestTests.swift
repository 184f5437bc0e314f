import Foundation
import Testing

/// Micro-guests under the real `vireo run` on the real /dev/kvm: each finishes within seconds.
@Suite(.enabled { try TestEnvironment.available("MicroGuestTests", .kvm, .micro("poweroff")) })
struct MicroGuestTests {
    init() { TestEnvironment.log("host: \(TestEnvironment.host)") }

    @Test func poweroffGuestExitsZero() throws {
        let kernel = try #require(TestEnvironment.micro("poweroff"))
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M"])
        defer { guest.stop() }
        let status = guest.waitForExit(timeout: 30)
        #expect(status == 0, "stderr: \(guest.errorOutput)")
        #expect(guest.output.contains("VIREO-MICRO poweroff"))
    }

    @Test func echoGuestReturnsTypedInput() throws {
        let kernel = try #require(TestEnvironment.micro("echo"))
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M"])
        defer { guest.stop() }
        #expect(guest.waitForOutput("VIREO-MICRO echo ready", timeout: 30), "output: \(guest.output) \(guest.errorOutput)")
        // Longer than the UART's receive FIFO, so backpressure is exercised too.
        let message = "hello vireo " + String(repeating: "0123456789", count: 20)
        guest.send(message)
        #expect(guest.waitForOutput(message, timeout: 30), "echoed: \(guest.output)")
        guest.send("\u{04}")
        #expect(guest.waitForExit(timeout: 30) == 0, "stderr: \(guest.errorOutput)")
        #expect(guest.output.contains("bye"))
    }

    @Test func counterGuestCounts() throws {
        let kernel = try #require(TestEnvironment.micro("counter"))
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--cmdline", "count=5"])
        defer { guest.stop() }
        #expect(guest.waitForExit(timeout: 30) == 0, "stderr: \(guest.errorOutput)")
        let counts = guest.output.split(whereSeparator: \.isNewline).compactMap { line -> Int? in
            line.hasPrefix("count=") ? Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces)) : nil
        }
        #expect(counts == [0, 1, 2, 3, 4, 5], "output: \(guest.output)")
    }

    @Test func smpGuestRunsOnBothVCPUsAtOnce() throws {
        let kernel = try #require(TestEnvironment.micro("smp"))
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--cpus", "2"])
        defer { guest.stop() }
        let status = guest.waitForExit(timeout: 60)
        TestEnvironment.log("smp guest output: \(guest.output)")
        #expect(status == 0, "stderr: \(guest.errorOutput)")
        #expect(guest.output.contains("cpu 0 running"))
        #expect(guest.output.contains("cpu 1 running"))
        #expect(guest.output.contains("VIREO-MICRO smp cpus=2"))
    }

    @Test func consoleLogCapturesOutput() throws {
        let kernel = try #require(TestEnvironment.micro("poweroff"))
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("vireo-console-\(getpid()).log").path
        try? FileManager.default.removeItem(atPath: log)
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--console-log", log, "--no-console"])
        defer { guest.stop() }
        #expect(guest.waitForExit(timeout: 30) == 0)
        let logged = try String(contentsOfFile: log, encoding: .utf8)
        #expect(logged.contains("VIREO-MICRO poweroff"))
        #expect(!guest.output.contains("VIREO-MICRO poweroff"))
    }

    @Test func sigtermStopsTheVMCleanly() throws {
        let kernel = try #require(TestEnvironment.micro("counter"))
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M"])
        defer { guest.stop() }
        #expect(guest.waitForOutput("count=1", timeout: 30))
        kill(guest.process.processIdentifier, SIGTERM)
        #expect(guest.waitForExit(timeout: 10) == 128 + SIGTERM)
        #expect(guest.errorOutput.contains("signal"))
    }
}

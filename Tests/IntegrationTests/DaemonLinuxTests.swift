import Foundation
import Manager
import Testing

extension DaemonTests {
    /// The project's Linux test kernel, run as a daemon VM: one boot to `Run /init`.
    @Suite(.enabled(if: TestEnvironment.path("VIREO_KERNEL") != nil || TestEnvironment.requireGuests))
    struct Linux {
        @Test func linuxReachesInitThroughTheDaemon() throws {
            let kernel = try #require(TestEnvironment.path("VIREO_KERNEL"), "VIREO_KERNEL is not set: run scripts/test")
            let initramfs = try #require(TestEnvironment.path("VIREO_INITRAMFS"), "VIREO_INITRAMFS is not set")
            let daemon = try DaemonProcess()
            defer { daemon.stop() }
            try daemon.create("linux", kernel: kernel, [
                ("initrd", .string(initramfs)), ("memoryMiB", .int(256)), ("cpus", .int(1)),
                ("cmdline", .string("console=ttyS0 panic=-1 lpj=1000000")),
            ])
            let started = Date()
            #expect(try daemon.action("linux", "start").state == "running")
            let reached = daemon.waitForLog("linux", "Run /init", timeout: 400)
            TestEnvironment.log("Linux under the daemon reached 'Run /init' after \(Int(Date().timeIntervalSince(started))) s on \(TestEnvironment.host)")
            #expect(reached, "console tail: \(daemon.logs("linux").suffix(2000))")
            #expect(daemon.logs("linux").contains("Linux version 6.1"))
            _ = try? daemon.action("linux", "kill")
        }
    }
}

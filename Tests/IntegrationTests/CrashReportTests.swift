import Foundation
import Testing

/// Issue 12: a Swift crash in a VMM under seccomp is reported by name. Swift's own crash handler
/// spawns its backtracer, which the filter denies, so the VMM used to end with status 159 (SIGSYS)
/// and no word of the crash. The debug-only hook VIREO_TEST_CRASH makes a thread crash once its
/// filter is on; a release build has no such hook (TestHooks.swift).
@Suite(.enabled { try TestEnvironment.available("CrashReportTests", .kvm, .micro("counter")) })
struct CrashReportTests {
    @Test(arguments: [
        ("vcpu0", "trap", "vCPU"),            // an Int overflow: a bare trap, Swift prints nothing
        ("vcpu0", "fatal", "vCPU"),           // fatalError: Swift's message, then the trap
        ("virtio-rng", "trap", "virtio-rng device"),
        ("control", "trap", "control"),
    ])
    func aSwiftCrashUnderSeccompIsNamed(thread: String, kind: String, role: String) throws {
        let kernel = try #require(TestEnvironment.micro("counter"))
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin", "--rng"],
                                     environment: ["VIREO_TEST_CRASH": "\(thread):\(kind)"])
        defer { guest.stop() }
        let status = guest.waitForExit(timeout: 30)
        let stderr = guest.errorOutput
        #expect(status == 128 + SIGILL, "a trap ends the VMM with SIGILL's status, not SIGSYS's 159: \(String(describing: status)); stderr: \(stderr)")
        #expect(stderr.contains("vireo: the VMM crashed: SIGILL: a Swift runtime trap"), "stderr: \(stderr)")
        #expect(stderr.contains("in the \(role) thread"), "stderr: \(stderr)")
        #expect(!stderr.contains("seccomp denied"), "the crash path must not trip the filter: \(stderr)")
        if kind == "fatal" {
            #expect(stderr.contains("VIREO_TEST_CRASH asked for a crash in \(thread)"), "Swift's own message comes first: \(stderr)")
        }
    }

    @Test func withSeccompOffSwiftsOwnCrashHandlerRuns() throws {
        // No filter, no need for the reporter: the runtime's handler (and backtracer) stay in charge.
        let kernel = try #require(TestEnvironment.micro("counter"))
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin", "--seccomp", "off"],
                                     environment: ["VIREO_TEST_CRASH": "vcpu0:fatal", "SWIFT_BACKTRACE": "enable=no"])
        defer { guest.stop() }
        let status = guest.waitForExit(timeout: 30)
        // Killed by the signal itself (Foundation reports the signal number), not by the reporter's exit.
        #expect(status == SIGILL || status == SIGTRAP, "\(String(describing: status)): \(guest.errorOutput)")
        #expect(!guest.errorOutput.contains("vireo: the VMM crashed"), "\(guest.errorOutput)")
        #expect(guest.errorOutput.contains("VIREO_TEST_CRASH asked for a crash in vcpu0"), "\(guest.errorOutput)")
    }
}

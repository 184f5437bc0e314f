import Foundation
import Testing

/// seccomp in the real `vireo run`: a forbidden syscall after the filters are in place ends the VMM
/// and the report names it; filters stack per thread role.
@Suite(.enabled { try TestEnvironment.available("IsolationSeccompTests", .kvm, .micro("counter")) })
struct IsolationSeccompTests {
    private func runForbidden(_ syscall: String, extra: [String] = []) throws -> (Int32?, String) {
        let kernel = try #require(TestEnvironment.micro("counter"))
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--no-stdin"] + extra,
                                     environment: ["VIREO_TEST_FORBIDDEN_SYSCALL": syscall])
        defer { guest.stop() }
        let status = guest.waitForExit(timeout: 30)
        return (status, guest.errorOutput)
    }

    @Test(arguments: [("execve", 59), ("openat", 257), ("socket", 41), ("fork", 57), ("ptrace", 101)])
    func forbiddenSyscallIsNamed(syscall: String, number: Int) throws {
        let (status, stderr) = try runForbidden(syscall)
        #expect(status == 159, "stderr: \(stderr)")
        #expect(stderr.contains("vireo: seccomp denied syscall \(syscall) (nr \(number)) in the vCPU thread"), "stderr: \(stderr)")
    }

    @Test func executableMemoryIsForbidden() throws {
        // mprotect(0, 4096, PROT_READ|PROT_WRITE|PROT_EXEC): the prot argument filter stops it.
        let (status, stderr) = try runForbidden("mprotect:0,4096,7")
        #expect(status == 159)
        #expect(stderr.contains("seccomp denied syscall mprotect (nr 10)"), "stderr: \(stderr)")
    }

    @Test func ioctlOutsideTheRoleIsNamedWithItsRequest() throws {
        // KVM_SET_USER_MEMORY_REGION (0x4020ae46) from a vCPU thread: never needed once the guest runs.
        let (status, stderr) = try runForbidden("ioctl:5,\(0x4020_AE46)")
        #expect(status == 159)
        #expect(stderr.contains("seccomp denied syscall ioctl (nr 16, request 0x4020ae46)"), "stderr: \(stderr)")
    }

    @Test func killModeIsReportedByTheSupervisor() throws {
        let (status, stderr) = try runForbidden("execve", extra: ["--seccomp", "kill"])
        #expect(status == 159, "stderr: \(stderr)")
        #expect(stderr.contains("vireo: the VMM was killed by seccomp"), "stderr: \(stderr)")
        if access("/dev/kmsg", R_OK) == 0 {
            #expect(stderr.contains("syscall execve (nr 59)"), "the kernel's audit record was not found: \(stderr)")
        }
    }

    @Test func logModeLetsTheCallThrough() throws {
        let kernel = try #require(TestEnvironment.micro("counter"))
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--seccomp", "log",
                                                 "--cmdline", "count=2"],
                                     environment: ["VIREO_TEST_FORBIDDEN_SYSCALL": "getppid"])
        defer { guest.stop() }
        #expect(guest.waitForExit(timeout: 30) == 0, "stderr: \(guest.errorOutput)")
        #expect(guest.errorOutput.contains("test hook: getppid returned"), "stderr: \(guest.errorOutput)")
        #expect(guest.output.contains("count=2"))
    }

    @Test func offSaysSoLoudly() throws {
        let kernel = try #require(TestEnvironment.micro("poweroff"))
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M", "--seccomp=off"])
        defer { guest.stop() }
        #expect(guest.waitForExit(timeout: 30) == 0)
        #expect(guest.errorOutput.contains("WARNING: --seccomp=off"), "stderr: \(guest.errorOutput)")
    }

    @Test func filtersStackPerThreadRole() throws {
        let kernel = try #require(TestEnvironment.micro("counter"))
        let guest = try GuestProcess(arguments: ["run", "--kernel", kernel, "--memory", "64M"])
        defer { guest.stop() }
        #expect(guest.waitForOutput("count=1", timeout: 30))
        let vmm = try #require(HostProcess.vmm(of: guest.process.processIdentifier))
        #expect(HostProcess.status(vmm, "NoNewPrivs") == "1")
        #expect(HostProcess.status(vmm, "Seccomp") == "2")
        // Main thread: the control filter; vCPU: control + vCPU; console input: control + device I/O.
        #expect(HostProcess.status(vmm, "Seccomp_filters") == "1")
        for tid in HostProcess.vcpuThreads(of: vmm) {
            #expect(HostProcess.status(vmm, thread: tid, "Seccomp_filters") == "2")
        }
        let console = try #require(HostProcess.threads(of: vmm).first { $0.name == "vireo-console" })
        #expect(HostProcess.status(vmm, thread: console.tid, "Seccomp_filters") == "2")
    }
}

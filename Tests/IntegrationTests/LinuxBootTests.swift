import Foundation
import Testing

/// The project's Linux test kernel booted under `vireo run`. One boot serves every assertion.
///
/// On every host the kernel must boot with 2 vCPUs through to `Run /init as init process` and
/// report both CPUs brought up. On hardware hosts the busybox init then prints its marker with 2
/// CPUs and reboots (exit 0). On PVM hosts guest user space cannot make system calls
/// (shared/docs/host-kvm.md), so init dies, the kernel panics and, with panic=-1, resets: Vireo
/// reports that as a panic (exit 3).
@Suite(.enabled(if: TestEnvironment.hasKVM && (TestEnvironment.path("VIREO_KERNEL") != nil || TestEnvironment.requireGuests)),
       .serialized)
struct LinuxBootTests {
    @Test func linuxBootsToInit() throws {
        let kernel = try #require(TestEnvironment.path("VIREO_KERNEL"), "VIREO_KERNEL is not set: run scripts/test")
        let initramfs = try #require(TestEnvironment.path("VIREO_INITRAMFS"), "VIREO_INITRAMFS is not set")
        let hardware = TestEnvironment.host == .hardware
        let cpus = 2
        TestEnvironment.log("Linux boot on \(TestEnvironment.host) with \(cpus) vCPU(s)")
        let started = Date()
        let guest = try GuestProcess(arguments: [
            "run", "--kernel", kernel, "--initrd", initramfs, "--memory", "256M", "--cpus", "\(cpus)",
            "--cmdline", "console=ttyS0 panic=-1 lpj=1000000", "--verbose",
        ])
        defer { guest.stop() }
        let reachedInit = guest.waitForOutput("Run /init as init process", timeout: 400)
        let bootSeconds = Date().timeIntervalSince(started)
        #expect(reachedInit, "kernel did not reach init. Output tail: \(guest.output.suffix(3000)) stderr: \(guest.errorOutput)")
        TestEnvironment.log("reached 'Run /init' after \(Int(bootSeconds)) s")
        let status = guest.waitForExit(timeout: hardware ? 120 : 300)
        let output = guest.output
        #expect(output.contains("Linux version 6.1"))
        #expect(output.contains("smp: Brought up 1 node, 2 CPUs"), "output: \(output.prefix(6000))")
        #expect(output.contains("MPTABLE: OEM ID: VIREO"))
        if hardware {
            #expect(output.contains("VIREO-INIT-OK cpus=2"), "output: \(output.suffix(2000))")
            #expect(status == 0, "stderr: \(guest.errorOutput)")
        } else {
            // init cannot make system calls here: the kernel panics and resets.
            #expect(output.contains("Kernel panic - not syncing"), "output: \(output.suffix(2000))")
            #expect(status == 3, "exit status \(String(describing: status)); stderr: \(guest.errorOutput)")
            #expect(guest.errorOutput.contains("panicked"))
        }
    }

    /// The same kernel as a bzImage, entered through its 64-bit entry: its decompressor runs and the
    /// kernel starts with our boot_params (e820, command line, MP table). Stopped once that is shown.
    @Test func bzImageBootsThroughItsDecompressor() throws {
        guard let bzImage = TestEnvironment.path("VIREO_BZIMAGE") else {
            #expect(!TestEnvironment.requireGuests, "VIREO_BZIMAGE is not set")
            return
        }
        let guest = try GuestProcess(arguments: [
            "run", "--kernel", bzImage, "--memory", "128M", "--cmdline", "console=ttyS0 lpj=1000000 vireo-marker",
        ])
        defer { guest.stop() }
        let started = Date()
        #expect(guest.waitForOutput("found SMP MP-table", timeout: 300), "output: \(guest.output.suffix(2000)) \(guest.errorOutput)")
        TestEnvironment.log("bzImage: kernel running after \(Int(Date().timeIntervalSince(started))) s")
        #expect(guest.output.contains("Linux version 6.1"))
        #expect(guest.output.contains("Command line: console=ttyS0 lpj=1000000 vireo-marker"))
        #expect(guest.output.contains("BIOS-e820: [mem 0x0000000000100000-0x0000000007ffffff] usable"))
        kill(guest.process.processIdentifier, SIGINT)
        #expect(guest.waitForExit(timeout: 30) == 128 + SIGINT)
    }
}

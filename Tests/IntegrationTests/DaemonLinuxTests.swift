import Foundation
import Manager
import Testing

extension DaemonTests {
    /// The project's Linux test kernel, run as a daemon VM: one boot through the test init's user space.
    @Suite(.enabled { try TestEnvironment.available("DaemonTests.Linux", .kernel, .initramfs) })
    struct Linux {
        @Test func linuxReachesInitThroughTheDaemon() throws {
            let kernel = try #require(TestEnvironment.path("VIREO_KERNEL"), "VIREO_KERNEL is not set: run scripts/test")
            let initramfs = try #require(TestEnvironment.path("VIREO_INITRAMFS"), "VIREO_INITRAMFS is not set")
            let daemon = try DaemonProcess()
            defer { daemon.stop() }
            // The definition's devices reach the guest: an ext4 root disk, user networking (DHCP), rng.
            let disk = try RootDisk.make(in: URL(fileURLWithPath: daemon.directory), name: "root.ext4")
            try daemon.create("linux", kernel: kernel, [
                ("initrd", .string(initramfs)), ("memoryMiB", .int(256)), ("cpus", .int(1)),
                ("cmdline", .string("console=ttyS0 panic=-1 lpj=1000000 rdinit=/none root=/dev/vda rw ip=dhcp vireo.test=rng")),
                ("disks", .array([.object([("path", .string(disk))])])),
                ("nets", .array([.object([("mode", .string("user"))])])),
                ("rng", .bool(true)),
            ])
            let started = Date()
            let vm = try daemon.action("linux", "start")
            #expect(vm.state == "running")
            // Least privilege by default (issue 12): no `isolation.user`, yet the VMM that boots this
            // guest and its disk runs as a per-VM uid with every capability set empty, jailed (its
            // own mount and network namespaces): DHCP below comes through passt, started and held
            // before the VMM left the host's network namespace.
            let vmmPID = try #require(HostProcess.vmm(of: vm.pid ?? -1), "no VMM process")
            if JailSupport.unavailableReason == nil {
                for kind in ["mnt", "net"] {
                    let theirs = Jail.namespace(kind, of: vmmPID)
                    #expect(theirs != nil && theirs != Jail.namespace(kind, of: daemon.pid), "the VMM is not in a \(kind) namespace of its own")
                }
            }
            let credentials = try #require(ProcessCredentials(pid: vmmPID))
            #expect(credentials.uids.allSatisfy { $0 != 0 } && credentials.uids.count == 4, "VMM uids: \(credentials.uids)")
            #expect(credentials.hasNoCapabilities, "VMM capabilities: \(credentials.capabilities)")
            let reached = daemon.waitForLog("linux", "Run /sbin/init as init process", timeout: 400)
            TestEnvironment.log("Linux under the daemon reached 'Run /sbin/init' after \(Int(Date().timeIntervalSince(started))) s on \(TestEnvironment.host)")
            let console = daemon.logs("linux")
            #expect(reached, "console tail: \(console.suffix(2000))")
            #expect(console.contains("Linux version 6.1"))
            #expect(console.contains("EXT4-fs (vda): mounted filesystem"), "the root disk from 'disks'")
            #expect(console.contains("IP-Config: Complete:"), "DHCP through the NIC from 'nets'")
            #expect(try daemon.vm("linux")["vmm"]?["devices"]?.serialized().contains("rng") == true)
            // User space: the test init runs, reads the rng device and resets the machine, which the
            // daemon records as a clean stop.
            #expect(daemon.waitForLog("linux", "VIREO-INIT-DONE", timeout: 120), "console tail: \(daemon.logs("linux").suffix(2000))")
            let log = daemon.logs("linux")
            #expect(log.contains("VIREO-INIT-OK cpus=1"))
            #expect(GuestChecks.result(log, "VIREO-RNG ok")?["bytes"]?.count == 64, "\(log.suffix(1000))")
            #expect(!log.contains("Kernel panic"))
            let deadline = Date().addingTimeInterval(60)
            var state = try daemon.vm("linux").state
            while state != "stopped" && Date() < deadline {
                usleep(200_000)
                state = try daemon.vm("linux").state
            }
            #expect(state == "stopped", "a guest that resets itself ends as stopped, not crashed: \(String(describing: state))")
        }
    }
}

import Foundation
import Testing

/// The project's Linux test kernel booted under `vireo run`. One boot serves every assertion.
///
/// On every host the kernel boots with 2 vCPUs, mounts its ext4 root from virtio-blk, completes
/// the kernel's own DHCP, and runs the test guest's init from that disk: it prints its marker with
/// 2 CPUs and resets the machine (exit 0). On PVM hosts the init's system calls reach the kernel
/// through the test kernel's patch (guest/patches, docs/hosts.md).
@Suite(.enabled { try TestEnvironment.available("LinuxBootTests", .kvm, .kernel, .initramfs) },
       .serialized)
struct LinuxBootTests {
    @Test func linuxBootsToInit() throws {
        let kernel = try #require(TestEnvironment.path("VIREO_KERNEL"), "VIREO_KERNEL is not set: run scripts/test")
        let initramfs = try #require(TestEnvironment.path("VIREO_INITRAMFS"), "VIREO_INITRAMFS is not set")
        let hardware = TestEnvironment.host == .hardware
        let cpus = 2
        TestEnvironment.log("Linux boot on \(TestEnvironment.host) with \(cpus) vCPU(s)")
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("vireo-linux-\(getpid())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let socket = scratch.appendingPathComponent("api.sock").path
        let snapshot = scratch.appendingPathComponent("midboot").path
        // The root disk: busybox and the test init on ext4 made on the host. The initramfs is
        // unpacked too, but rdinit points nowhere, so the kernel goes on to mount root=/dev/vda.
        let disk = try RootDisk.make(in: scratch, name: "root.ext4")
        let started = Date()
        let guest = try GuestProcess(arguments: [
            "run", "--kernel", kernel, "--initrd", initramfs, "--memory", "256M", "--cpus", "\(cpus)",
            "--disk", disk, "--rng", "--net", "user",
            "--cmdline", "console=ttyS0 panic=-1 lpj=1000000 rdinit=/none root=/dev/vda rw ip=dhcp", "--verbose",
            "--api-socket", socket,
        ])
        defer { guest.stop() }

        // Mid-boot (serial driver up, init not yet run): pause, snapshot, resume. The same boot
        // then goes on, and the snapshot is restored below to finish the boot a second time.
        let midBoot = guest.waitForOutput("serial8250: ttyS0 at I/O 0x3f8", timeout: 300)
        #expect(midBoot, "no serial driver line. Output: \(guest.output.suffix(3000)) stderr: \(guest.errorOutput)")
        var snapshotTaken = false
        var coldRSS: Int?
        if midBoot {
            #expect(try UnixSocket.request(socket, "pause").contains("paused"))
            let reply = try UnixSocket.request(socket, "snapshot \(snapshot)")
            snapshotTaken = reply.contains("\"ok\":true")
            #expect(snapshotTaken, "snapshot: \(reply)")
            // The disk as it was at the snapshot: the base every restored copy gets an overlay on.
            try FileManager.default.copyItem(atPath: disk, toPath: disk + ".at-snapshot")
            coldRSS = ProcessMemory.rssKiB(guest.process.processIdentifier)
            #expect(try UnixSocket.request(socket, "resume").contains("running"))
        }

        let reachedInit = guest.waitForOutput("Run /sbin/init as init process", timeout: 400)
        let bootSeconds = Date().timeIntervalSince(started)
        #expect(reachedInit, "kernel did not reach init. Output tail: \(guest.output.suffix(3000)) stderr: \(guest.errorOutput)")
        TestEnvironment.log("reached 'Run /init' after \(Int(bootSeconds)) s")
        let status = guest.waitForExit(timeout: hardware ? 120 : 300)
        let output = guest.output
        #expect(output.contains("Linux version 6.1"))
        #expect(output.contains("smp: Brought up 1 node, 2 CPUs"), "output: \(output.prefix(6000))")
        #expect(output.contains("MPTABLE: OEM ID: VIREO"))
        #expect(output.contains("Freeing initrd memory"))
        #expect(output.contains("virtio_blk virtio0: [vda] 131072 512-byte logical blocks"))
        #expect(output.contains("EXT4-fs (vda): mounted filesystem"))
        #expect(output.contains("VFS: Mounted root (ext4 filesystem)"))
        #expect(output.contains("IP-Config: Complete:"), "the kernel's DHCP through passt and virtio-net")
        // The guest's writes reached the image: the superblock's mount count went from 0 to 1.
        #expect(RootDisk.mountCount(disk) == 1, "dumpe2fs: \(RootDisk.mountCount(disk).map(String.init) ?? "failed")")
        expectInitOutcome(output: output, status: status, stderr: guest.errorOutput, hardware: hardware)

        // The mid-boot snapshot, restored into a new VMM process, finishes the same boot.
        guard snapshotTaken else { return }
        let restoreStarted = Date()
        let base = disk + ".at-snapshot"
        let restoredOverlay = disk + ".restored.ovl"
        let restored = try GuestProcess(arguments: ["run", "--restore", snapshot, "--disk", "\(restoredOverlay),backing=\(base)",
                                                    "--no-stdin", "--verbose"])
        defer { restored.stop() }
        // Two more clones of the same snapshot at once: guest RAM comes from the snapshot file,
        // shared and loaded on touch, so the three together cost less than one cold-booted VM did.
        // Each has its own copy-on-write overlay over the one base image.
        let clones = try (1...2).map { clone in
            try GuestProcess(arguments: ["run", "--restore", snapshot, "--disk", "\(disk).clone\(clone).ovl,backing=\(base)",
                                         "--no-stdin", "--no-console"])
        }
        defer { clones.forEach { $0.stop() } }
        usleep(2_000_000)
        let clonePSS = ([restored] + clones).compactMap { ProcessMemory.pssKiB($0.process.processIdentifier) }
        TestEnvironment.log("cold-booted VM RSS at the snapshot: \(coldRSS ?? -1) KiB; three clones' PSS: \(clonePSS) KiB")
        #expect(clonePSS.count == 3)
        if let coldRSS { #expect(clonePSS.reduce(0, +) < coldRSS, "three clones should need less memory than one cold VM") }
        clones.forEach { $0.stop() }
        #expect(restored.waitForOutput("Run /sbin/init as init process", timeout: 300),
                "restored kernel did not reach init: \(restored.output.suffix(3000)) \(restored.errorOutput)")
        #expect(restored.output.contains("EXT4-fs (vda): mounted filesystem"), "the restored guest mounts its root disk")
        #expect(restored.output.contains("IP-Config: Complete:"), "the restored guest completes DHCP through a new passt")
        // The guest's writes went to its overlay: the base is as it was at the snapshot (never mounted),
        // the base with the overlay's blocks laid over it is a file system mounted once.
        #expect(RootDisk.mountCount(base) == 0, "the base image is never written")
        let merged = try RootDisk.merge(base: base, overlay: restoredOverlay)
        #expect(RootDisk.mountCount(merged.path) == 1, "the overlay holds the guest's superblock update")
        #expect(merged.overlaidBlocks > 0 && merged.overlaidBlocks < 64 * 256 / 4, "overlay blocks: \(merged.overlaidBlocks)")
        TestEnvironment.log("restored mid-boot snapshot reached 'Run /init' after \(Int(Date().timeIntervalSince(restoreStarted))) s")
        #expect(!restored.output.contains("Linux version"), "a restore continues the boot, it does not start over")
        let restoredStatus = restored.waitForExit(timeout: hardware ? 120 : 300)
        expectInitOutcome(output: restored.output, status: restoredStatus, stderr: restored.errorOutput, hardware: hardware)
    }

    private func expectInitOutcome(output: String, status: Int32?, stderr: String, hardware: Bool,
                                   sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(output.contains("VIREO-INIT-OK cpus=2"), "output: \(output.suffix(2000))", sourceLocation: sourceLocation)
        #expect(output.contains("VIREO-INIT-DONE"), "output: \(output.suffix(2000))", sourceLocation: sourceLocation)
        #expect(!output.contains("Kernel panic"), "output: \(output.suffix(2000))", sourceLocation: sourceLocation)
        #expect(status == 0, "exit status \(String(describing: status)); stderr: \(stderr)", sourceLocation: sourceLocation)
        // What the VMM shapes in the guest's CPU, as the kernel uses it (guest/init.c, VIREO-CPU):
        // on emulated hosts the appended `vireo.noerms vireo.nocx16` clear erms/fsrm and cx16, and
        // the kernel keeps time with kvm-clock or the TSC, with or without a PIT (`--pit auto`).
        let cpu = output.split(whereSeparator: \.isNewline).first { $0.contains("VIREO-CPU ") }.map { String($0).trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
        #expect(cpu.contains("flags=1"), "no CPU flags line: \(output.suffix(2000))", sourceLocation: sourceLocation)
        if !hardware {
            #expect(cpu.contains("erms=0") && cpu.contains("fsrm=0") && cpu.contains("cx16=0"), "\(cpu)", sourceLocation: sourceLocation)
        }
        #expect(cpu.contains("clocksource=kvm-clock") || cpu.contains("clocksource=tsc"), "\(cpu)", sourceLocation: sourceLocation)
        let pit = stderr.contains("; no PIT;") ? "no PIT" : stderr.contains("; in-kernel PIT;") ? "in-kernel PIT" : "PIT not reported"
        TestEnvironment.log("\(cpu) (\(pit))")
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

/// Builds the ext4 root disk for the Linux tests with `mkfs.ext4 -d`: busybox, and the test guest's
/// init (compiled by guest/build-initramfs.sh, beside the initramfs) as /sbin/init.
enum RootDisk {
    /// The compiled guest/init.c next to VIREO_INITRAMFS.
    static var initBinary: String? {
        guard let initramfs = TestEnvironment.path("VIREO_INITRAMFS") else { return nil }
        return TestEnvironment.path("VIREO_INIT") ?? URL(fileURLWithPath: initramfs).deletingLastPathComponent().appendingPathComponent("init").path
    }

    static func make(in directory: URL, name: String, extra: [String: String] = [:]) throws -> String {
        let root = directory.appendingPathComponent("rootfs")
        let fm = FileManager.default
        for sub in ["bin", "sbin", "proc", "sys", "dev", "tmp", "root"] {
            try fm.createDirectory(at: root.appendingPathComponent(sub), withIntermediateDirectories: true)
        }
        let busybox = root.appendingPathComponent("bin/busybox").path
        if !fm.fileExists(atPath: busybox) { try fm.copyItem(atPath: "/bin/busybox", toPath: busybox) }
        let initPath = root.appendingPathComponent("sbin/init").path
        try? fm.removeItem(atPath: initPath)
        guard let initBinary, fm.fileExists(atPath: initBinary) else { throw RootDiskError(description: "no compiled test init (run scripts/test)") }
        try fm.copyItem(atPath: initBinary, toPath: initPath)
        for (file, source) in extra {
            let target = root.appendingPathComponent(file).path
            try? fm.removeItem(atPath: target)
            try fm.copyItem(atPath: source, toPath: target)
        }
        let image = directory.appendingPathComponent(name).path
        try? fm.removeItem(atPath: image)
        let mkfs = Process()
        mkfs.executableURL = URL(fileURLWithPath: "/sbin/mkfs.ext4")
        mkfs.arguments = ["-q", "-F", "-d", root.path, image, "64M"]
        try mkfs.run()
        mkfs.waitUntilExit()
        guard mkfs.terminationStatus == 0 else { throw RootDiskError(description: "mkfs.ext4 failed") }
        return image
    }

    /// The image the guest sees through an overlay: the base with every block the overlay's map
    /// marks laid over it (the map: 16-byte header, then one bit per 4 KiB block).
    static func merge(base: String, overlay: String) throws -> (path: String, overlaidBlocks: Int) {
        var image = try Data(contentsOf: URL(fileURLWithPath: base))
        let top = try Data(contentsOf: URL(fileURLWithPath: overlay))
        let map = try Data(contentsOf: URL(fileURLWithPath: overlay + ".map"))
        var count = 0
        for block in 0..<(image.count / 4096) where map[16 + block / 8] & (1 << UInt8(block % 8)) != 0 {
            image.replaceSubrange((block * 4096)..<((block + 1) * 4096), with: top[(block * 4096)..<((block + 1) * 4096)])
            count += 1
        }
        let path = overlay + ".merged"
        try image.write(to: URL(fileURLWithPath: path))
        return (path, count)
    }

    /// The superblock's mount count, read with dumpe2fs -h.
    static func mountCount(_ image: String) -> Int? {
        let dump = Process()
        let pipe = Pipe()
        dump.executableURL = URL(fileURLWithPath: "/sbin/dumpe2fs")
        dump.arguments = ["-h", image]
        dump.standardOutput = pipe
        dump.standardError = FileHandle.nullDevice
        guard (try? dump.run()) != nil else { return nil }
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        dump.waitUntilExit()
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Mount count:") }) else { return nil }
        return Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces))
    }

    struct RootDiskError: Error, CustomStringConvertible { let description: String }
}

/// Resident memory of a process, from /proc.
enum ProcessMemory {
    static func rssKiB(_ pid: Int32) -> Int? { field("/proc/\(pid)/status", "VmRSS:") }
    /// Proportional set size: shared pages split between the processes that map them.
    static func pssKiB(_ pid: Int32) -> Int? { field("/proc/\(pid)/smaps_rollup", "Pss:") }

    private static func field(_ path: String, _ name: String) -> Int? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name) }) else { return nil }
        return Int(line.dropFirst(name.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
    }
}

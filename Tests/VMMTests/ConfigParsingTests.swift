import Testing
import KVM
@testable import VMM

@Suite struct ConfigParsingTests {
    @Test func sizes() {
        #expect(ByteSize.parse("512M") == 512 << 20)
        #expect(ByteSize.parse("2G") == 2 << 30)
        #expect(ByteSize.parse("1GiB") == 1 << 30)
        #expect(ByteSize.parse("256") == 256 << 20)  // a bare number is MiB, as in QEMU
        #expect(ByteSize.parse("4096b") == 4096)
        #expect(ByteSize.parse("") == nil)
        #expect(ByteSize.parse("1.5G") == nil)
        #expect(ByteSize.parse("-1M") == nil)
        #expect(ByteSize.parse("lots") == nil)
        #expect(ByteSize.parse("99999999999999999P") == nil)  // overflow
        #expect(ByteSize.format(512 << 20) == "512 MiB")
    }

    @Test func commandLineOnPVMGetsTheEmulatedHostOptionsOnce() {
        #expect(CommandLinePolicy.adapt("console=ttyS0", host: .pvm, enabled: true)
                == "console=ttyS0 noxsave vireo.noerms vireo.nocx16")
        #expect(CommandLinePolicy.adapt("console=ttyS0 noxsave", host: .pvm, enabled: true)
                == "console=ttyS0 noxsave vireo.noerms vireo.nocx16")
        #expect(CommandLinePolicy.adapt("console=ttyS0 vireo.nocx16 vireo.noerms noxsave", host: .pvm, enabled: true)
                == "console=ttyS0 vireo.nocx16 vireo.noerms noxsave")
        #expect(CommandLinePolicy.adapt("", host: .pvm, enabled: true) == "noxsave vireo.noerms vireo.nocx16")
        #expect(CommandLinePolicy.adapt("console=ttyS0", host: .hardware, enabled: true) == "console=ttyS0")
        #expect(CommandLinePolicy.adapt("console=ttyS0", host: .pvm, enabled: false) == "console=ttyS0")
    }

    @Test func exitCodes() {
        #expect(StopReason.guestReset.exitCode == 0)
        #expect(StopReason.requested.exitCode == 0)
        #expect(StopReason.guestPanic.exitCode == 3)
        #expect(StopReason.tripleFault.exitCode == 1)
        #expect(StopReason.error("x").exitCode == 1)
        #expect(StopReason.signal(15).exitCode == 143)
        #expect(StopReason.debugExit(code: 7).exitCode == 7)
    }

    @Test func diskSpecs() throws {
        let plain = try DiskSpec.parse("/images/root.ext4")
        #expect(plain.path == "/images/root.ext4" && !plain.readOnly && plain.id == "root.ext4")
        let full = try DiskSpec.parse("/x/data.img,readonly,id=data0")
        #expect(full.readOnly && full.id == "data0")
        #expect(throws: VMMError.self) { try DiskSpec.parse("") }
        #expect(throws: VMMError.self) { try DiskSpec.parse("/x,bogus") }
        #expect(throws: VMMError.self) { try DiskSpec.parse("/x,id=") }
        #expect(throws: VMMError.self) { try DiskSpec.parse("/x,id=way-too-long-for-a-virtio-serial") }
        #expect(throws: VMMError.self) { try DiskSpec.parse("/nonexistent/disk.img").validate() }
        #expect(throws: VMMError.self) { try DiskSpec.parse("/tmp").validate() }
        // Copy-on-write overlays: the base must be readable, the overlay creatable; never read-only.
        let overlay = try DiskSpec.parse("/tmp/vireo-clone.ovl,backing=/proc/self/exe")
        #expect(overlay.backing == "/proc/self/exe" && overlay.path == "/tmp/vireo-clone.ovl")
        #expect(throws: VMMError.self) { try DiskSpec.parse("/x.ovl,backing=") }
        #expect(throws: VMMError.self) { try DiskSpec.parse("/x.ovl,backing=/base.img,readonly") }
        #expect(throws: VMMError.self) { try DiskSpec.parse("/tmp/x.ovl,backing=/nonexistent/base.img").validate() }
        #expect(throws: VMMError.self) { try DiskSpec.parse("/nonexistent/dir/x.ovl,backing=/proc/self/exe").validate() }
        #expect(throws: VMMError.self) { try DiskSpec.parse("/tmp/same,backing=/tmp/same").validate() }
    }

    @Test func netSpecs() throws {
        let user = try NetSpec.parse("user", index: 0)
        #expect(user.backend == .user && user.mac == [0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
        #expect(try NetSpec.parse("user", index: 1).mac.last == 0x57)
        let tap = try NetSpec.parse("tap=vireo0,mac=02:00:00:aa:bb:cc", index: 0)
        #expect(tap.backend == .tap("vireo0") && tap.mac == [0x02, 0, 0, 0xaa, 0xbb, 0xcc])
        #expect(throws: VMMError.self) { try NetSpec.parse("bridge", index: 0) }
        #expect(throws: VMMError.self) { try NetSpec.parse("user,mac=zz:00:00:00:00:00", index: 0) }
        #expect(throws: VMMError.self) { try NetSpec.parse("user,mac=01:00:00:00:00:00", index: 0) }  // multicast
        #expect(throws: VMMError.self) { try NetSpec.parse("user,mac=52:54:00:12:34", index: 0) }
        #expect(throws: VMMError.self) { try NetSpec.parse("tap=", index: 0) }
        #expect(throws: VMMError.self) { try NetSpec.parse("tap=name-that-is-too-long", index: 0) }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Memory
import Testing
import VireoTestSupport
@testable import X86

/// Opt-in checks against real kernels: set VIREO_BOOT_TEST_KERNEL_DIR to a directory holding a
/// Linux `bzImage` and/or `vmlinux` (x86-64, CONFIG_PVH for the PVH note check).
@Suite struct BootRealKernelTests {
    static let directory: String? = getenv("VIREO_BOOT_TEST_KERNEL_DIR").map { String(cString: $0) }

    /// scripts/test sets the directory to the test kernel's cache entry; strict runs fail without it.
    static func gate() throws -> Bool {
        try Prerequisites.check(directory == nil ? ["VIREO_BOOT_TEST_KERNEL_DIR (scripts/test sets it)"] : [], test: "BootRealKernelTests")
    }

    static func read(_ name: String) -> [UInt8]? {
        guard let directory, let file = fopen(directory + "/" + name, "rb") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        return bytes
    }

    @Test(.enabled { try gate() }) func realBzImage() throws {
        guard let image = Self.read("bzImage") else { return }
        guard case let .bzImage(bz) = try KernelImage(parsing: image) else {
            Issue.record("bzImage not detected as one"); return
        }
        #expect(bz.header.version >= 0x020C)
        #expect(bz.header.xloadflags & SetupHeader.xlfKernel64 != 0)
        let memory = try bootTestMemory(size: 256 << 20)
        let boot = try X86Boot.prepare(kernel: image, initrd: [0x30, 0x37, 0x30, 0x37], commandLine: "console=ttyS0",
                                       cpuCount: 2, into: memory)
        #expect(boot.bootProtocol == .linux64)
        #expect(boot.entry == boot.kernel.range.lowerBound + 0x200)
        #expect(try memory.readBytes(at: boot.kernel.range.lowerBound, count: 64)[...] == image[bz.setupSize..<(bz.setupSize + 64)])
    }

    @Test(.enabled { try gate() }) func realVmlinux() throws {
        guard let image = Self.read("vmlinux") else { return }
        let kernel = try ELFKernel(parsing: image)
        #expect(kernel.is64Bit && kernel.isLinux)
        #expect(kernel.pvhEntry != nil)
        let memory = try bootTestMemory(size: 256 << 20)
        let loaded = try kernel.load(image, into: memory)
        #expect(loaded.entry64 == kernel.entry)
        for segment in kernel.segments {
            let count = Int(min(segment.fileSize, 256))
            #expect(try memory.readBytes(at: segment.physicalAddress, count: count)[...]
                == image[Int(segment.fileOffset)..<(Int(segment.fileOffset) + count)])
        }
    }
}

import Memory
import Testing
@testable import X86

@Suite struct BootBzImageTests {
    @Test func parsesAndLoadsAtThePreferredAddress() throws {
        let kernel = Array((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 13) })
        let image = BootTestBzImage.build(setupSects: 4, kernel: kernel)
        let bz = try BzImage(parsing: image)
        #expect(bz.setupSize == 5 * 512)
        #expect(bz.kernelSize == kernel.count)
        #expect(bz.header.version == 0x020F)
        #expect(bz.header.relocatable)
        #expect(bz.header.prefAddress == 0x100_0000)
        #expect(bz.header.cmdlineSize == 2048)
        #expect(bz.header.raw.count == 0x26C - 0x1F1)

        let memory = try bootTestMemory()
        let loaded = try bz.load(image, into: memory)
        #expect(loaded.format == .bzImage)
        #expect(loaded.entry64 == 0x100_0000 + 0x200)
        #expect(loaded.range == 0x100_0000..<(0x100_0000 + 0x40_0000))
        #expect(loaded.isLinux)
        #expect(loaded.commandLineLimit == 2048)
        #expect(loaded.initrdAddressMax == 0x7FFF_FFFF)
        #expect(try memory.readBytes(at: 0x100_0000, count: kernel.count) == kernel)
    }

    @Test func fallsBackToOneMiB() throws {
        // Not relocatable: load at 1 MiB, the kernel moves itself to pref_address.
        let fixed = BootTestBzImage.build(relocatable: false)
        let memory = try bootTestMemory()
        let loaded = try BzImage(parsing: fixed).load(fixed, into: memory)
        #expect(loaded.entry64 == 0x100200)
        #expect(loaded.range == 0x100000..<(0x100_0000 + 0x40_0000))

        // Relocatable but pref_address + init_size past the end of RAM: 1 MiB, runtime at the aligned address.
        let tight = BootTestBzImage.build(prefAddress: 0x100_0000, initSize: 0x100_0000)
        let small = try bootTestMemory(size: 24 << 20)
        let bz = try BzImage(parsing: tight)
        #expect(bz.loadAddress(in: small) == 0x100000)
        #expect(throws: BzImageError.self) { try bz.load(tight, into: small) }

        // Relocatable without a usable pref_address: run at 1 MiB rounded up to kernel_alignment.
        let noPref = BootTestBzImage.build(prefAddress: 0)
        let loadedNoPref = try BzImage(parsing: noPref).load(noPref, into: memory)
        #expect(loadedNoPref.entry64 == 0x100200)
        #expect(loadedNoPref.range == 0x100000..<(0x200000 + 0x40_0000))
    }

    @Test func zeroSetupSectorsMeansFour() throws {
        let image = BootTestBzImage.build(setupSects: 0)
        #expect(try BzImage(parsing: image).setupSize == 5 * 512)
    }

    @Test func malformedHeadersGiveTypedErrors() {
        func check(_ image: [UInt8], _ matches: (BzImageError) -> Bool, sourceLocation: SourceLocation = #_sourceLocation) {
            do {
                _ = try BzImage(parsing: image)
                Issue.record("expected an error", sourceLocation: sourceLocation)
            } catch {
                #expect(matches(error), "unexpected \(error)", sourceLocation: sourceLocation)
            }
        }
        let good = BootTestBzImage.build()
        check(Array(good.prefix(100))) { if case .truncated = $0 { return true }; return false }
        check(Array(good.prefix(0x204))) { if case .truncated = $0 { return true }; return false }
        check(Array(good.prefix(0x250))) { if case .truncated = $0 { return true }; return false }
        var badFlag = good; badFlag[0x1FE] = 0
        check(badFlag) { $0 == .badBootFlag(0xAA00) }
        var badMagic = good; badMagic[0x202] = 0x68
        check(badMagic) { if case .badHeaderMagic = $0 { return true }; return false }
        check(BootTestBzImage.build(version: 0x020B)) { $0 == .protocolTooOld(version: 0x020B) }
        check(BootTestBzImage.build(loadflags: 0)) { $0 == .notLoadedHigh }
        check(BootTestBzImage.build(xloadflags: 2)) { $0 == .no64BitEntry }
        check(BootTestBzImage.build(kernelAlignment: 0x30_0000)) { $0 == .badKernelAlignment(0x30_0000) }
        check(BootTestBzImage.build(kernelAlignment: 0)) { $0 == .badKernelAlignment(0) }
        check(BootTestBzImage.build(relocatable: false, prefAddress: 0x8000)) { $0 == .badPreferredAddress(0x8000) }
        check(BootTestBzImage.build(initSize: 0)) { $0 == .zeroInitSize }
        check(BootTestBzImage.build(headerEnd: 0x230)) { if case .headerTooShort = $0 { return true }; return false }
        // setup_sects far beyond the file.
        var huge = BootTestBzImage.build(); huge[0x1F1] = 0xFF
        check(huge) { if case .truncated = $0 { return true }; return false }
        // Kernel shorter than syssize says.
        var short = BootTestBzImage.build(); short.put(UInt32(0x10000), at: 0x1F4)
        check(short) { if case .truncated = $0 { return true }; return false }
    }

    @Test func truncationMessagesNameTheNumbers() {
        var image = BootTestBzImage.build()
        image[0x1F1] = 17
        image = Array(image.prefix(2048))
        do {
            _ = try BzImage(parsing: image)
            Issue.record("expected an error")
        } catch {
            #expect(error.description == "kernel image is truncated: setup header says 17 setup sectors but the file has 2048 bytes")
        }
        #expect(BzImageError.protocolTooOld(version: 0x0206).description.contains("2.06"))
    }

    @Test func headerCappedAtTheZeroPageArea() throws {
        let image = BootTestBzImage.build(headerEnd: 0x202 + 0xF0)
        #expect(try BzImage(parsing: image).header.raw.count == 0x290 - 0x1F1)
    }

    @Test func kernelMustFitInRAM() throws {
        let image = BootTestBzImage.build(initSize: 0x800_0000)
        let memory = try bootTestMemory(size: 64 << 20)
        do {
            _ = try BzImage(parsing: image).load(image, into: memory)
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains("init_size"))
        }
    }
}

@Suite struct BootKernelImageTests {
    @Test func detectsFormats() throws {
        let elf = BootTestELF.build().image
        let bz = BootTestBzImage.build()
        #expect(elf.withUnsafeBytes { KernelImage.detectFormat($0) } == .elf)
        #expect(bz.withUnsafeBytes { KernelImage.detectFormat($0) } == .bzImage)
        if case .elf = try KernelImage(parsing: elf) {} else { Issue.record("expected ELF") }
        if case .bzImage = try KernelImage(parsing: bz) {} else { Issue.record("expected bzImage") }

        let memory = try bootTestMemory()
        let loaded = try KernelImage(parsing: bz).load(bz, into: memory)
        #expect(loaded.format == .bzImage)
    }

    @Test func namesWhatItFound() {
        let zip: [UInt8] = [0x50, 0x4B, 0x03, 0x04, 0x14, 0, 0, 0, 1, 2, 3]
        #expect(throws: KernelImageError.notAKernel(prefix: Array(zip.prefix(8)), size: zip.count)) {
            try KernelImage(parsing: zip)
        }
        do { _ = try KernelImage(parsing: zip) } catch {
            #expect(error.description.hasPrefix("not an ELF or bzImage kernel"))
            #expect(!error.description.contains("50 4b"), "never echo the refused file's bytes")
            #expect(error.description.contains("zip"))
        }
        do { _ = try KernelImage(parsing: [UInt8]()) } catch {
            #expect(error.description == "kernel image is empty")
        }
        // ELF magic routes to the ELF parser and its error.
        var elf = BootTestELF.build().image
        elf[18] = 40
        #expect(throws: KernelImageError.elf(.wrongMachine(machine: 40, is64Bit: true))) { try KernelImage(parsing: elf) }
        // "HdrS" routes to the bzImage parser.
        #expect(throws: KernelImageError.bzImage(.protocolTooOld(version: 0x0200))) {
            try KernelImage(parsing: BootTestBzImage.build(version: 0x0200))
        }
    }
}

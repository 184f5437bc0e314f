import Memory
import Testing
@testable import X86

@Suite struct BootParamsTests {
    @Test func offsetsMatchZeroPageRst() {
        #expect(BootParams.Offset.extRamdiskImage == 0x0C0)
        #expect(BootParams.Offset.extRamdiskSize == 0x0C4)
        #expect(BootParams.Offset.extCmdLinePtr == 0x0C8)
        #expect(BootParams.Offset.e820Entries == 0x1E8)
        #expect(BootParams.Offset.setupHeader == 0x1F1)
        #expect(BootParams.Offset.e820Table == 0x2D0)
        #expect(BootParams.Offset.e820Table + BootParams.maxE820Entries * BootParams.e820EntrySize == 0xCD0) // eddbuf follows
        typealias H = SetupHeader.Offset
        #expect(H.setupSects == 0x1F1 && H.syssize == 0x1F4 && H.bootFlag == 0x1FE && H.jump == 0x200)
        #expect(H.header == 0x202 && H.version == 0x206 && H.typeOfLoader == 0x210 && H.loadflags == 0x211)
        #expect(H.ramdiskImage == 0x218 && H.ramdiskSize == 0x21C && H.heapEndPtr == 0x224 && H.cmdLinePtr == 0x228)
        #expect(H.initrdAddrMax == 0x22C && H.kernelAlignment == 0x230 && H.relocatableKernel == 0x234)
        #expect(H.xloadflags == 0x236 && H.cmdlineSize == 0x238 && H.prefAddress == 0x258 && H.initSize == 0x260)
        #expect(BootLayout.zeroPage == 0x7000 && BootLayout.commandLine == 0x20000 && BootLayout.gdt == 0x500)
        #expect(BootLayout.pvhStartInfo == 0x6000 && BootLayout.ebda == 0x9FC00 && BootLayout.pml4 == 0x9000)
    }

    @Test func e820For512MiB() throws {
        let map = try E820Map.entries(ramRegions: X86MemoryLayout.regions(ramSize: 512 << 20))
        #expect(map == [
            E820Entry(address: 0, size: 0x9FC00, kind: .ram),
            E820Entry(address: 0x9FC00, size: 0x100000 - 0x9FC00, kind: .reserved),
            E820Entry(address: 0x100000, size: (512 << 20) - 0x100000, kind: .ram),
        ])
    }

    @Test func e820For5GiB() throws {
        let map = try E820Map.entries(ramRegions: X86MemoryLayout.regions(ramSize: 5 << 30))
        #expect(map.count == 4)
        #expect(map[2] == E820Entry(address: 0x100000, size: 0xC000_0000 - 0x100000, kind: .ram))
        #expect(map[3] == E820Entry(address: 1 << 32, size: (5 << 30) - 0xC000_0000, kind: .ram))
        #expect(map.filter { $0.kind == .ram }.reduce(0) { $0 + $1.size } == (5 << 30) - (0x100000 - 0x9FC00))
    }

    @Test func e820NeedsLowRAM() {
        #expect(throws: BootSetupError.noLowRAM) { try E820Map.entries(ramRegions: [(1 << 32, 1 << 30)]) }
        #expect(throws: BootSetupError.lowRAMTooSmall(end: 0x100000)) { try E820Map.entries(ramRegions: [(0, 0x100000)]) }
    }

    @Test func synthesizedZeroPageForVmlinux() throws {
        let memory = try bootTestMemory(size: 512 << 20)
        let cmdline = try BootCommandLine.write("console=ttyS0 reboot=k panic=1", into: memory)
        let initrd = Initrd(address: 0x1F00_0000, size: 0x12345)
        let params = try BootParams(setupHeader: nil, commandLine: cmdline, initrd: initrd,
                                    memoryMap: try E820Map.entries(for: memory))
        try params.write(into: memory)
        let page = try memory.readBytes(at: 0x7000, count: 4096)
        #expect(page == params.bytes)
        #expect(page.get(UInt16.self, at: 0x1FE) == 0xAA55)
        #expect(page.get(UInt32.self, at: 0x202) == 0x5372_6448)
        #expect(page.get(UInt16.self, at: 0x206) == 0x020F)
        #expect(page[0x210] == 0xFF)
        #expect(page[0x211] == 0x81)
        #expect(page.get(UInt16.self, at: 0x224) == 0xFE00)
        #expect(page.get(UInt32.self, at: 0x228) == 0x20000)
        #expect(page.get(UInt32.self, at: 0x0C8) == 0)
        #expect(page.get(UInt32.self, at: 0x238) == 30)
        #expect(page.get(UInt32.self, at: 0x218) == 0x1F00_0000)
        #expect(page.get(UInt32.self, at: 0x21C) == 0x12345)
        #expect(page.get(UInt32.self, at: 0x0C0) == 0 && page.get(UInt32.self, at: 0x0C4) == 0)
        #expect(page[0x1E8] == 3)
        #expect(page.get(UInt64.self, at: 0x2D0) == 0)
        #expect(page.get(UInt64.self, at: 0x2D8) == 0x9FC00)
        #expect(page.get(UInt32.self, at: 0x2E0) == 1)
        #expect(page.get(UInt64.self, at: 0x2E4) == 0x9FC00)
        #expect(page.get(UInt32.self, at: 0x2F4) == 2)
        #expect(page.get(UInt64.self, at: 0x2F8) == 0x100000)
        #expect(page.get(UInt64.self, at: 0x300) == (512 << 20) - 0x100000)
        #expect(page.get(UInt32.self, at: 0x308) == 1)
        #expect(try memory.readBytes(at: 0x20000, count: 31) == Array("console=ttyS0 reboot=k panic=1".utf8) + [0])
    }

    @Test func bzImageZeroPageKeepsTheKernelHeader() throws {
        let image = BootTestBzImage.build(initrdAddrMax: 0x3FFF_FFFF)
        let memory = try bootTestMemory(size: 128 << 20)
        let loaded = try KernelImage(parsing: image).load(image, into: memory)
        let header = try #require(loaded.setupHeader)
        let cmdline = try BootCommandLine.write("root=/dev/vda", limit: loaded.commandLineLimit, into: memory)
        let initrd = try Initrd.load([UInt8](repeating: 7, count: 10000), for: loaded, into: memory)
        let params = try BootParams(setupHeader: header, commandLine: cmdline, initrd: initrd,
                                    memoryMap: try E820Map.entries(for: memory))
        let page = params.bytes
        #expect(page[0x1F1] == 4)
        #expect(page.get(UInt32.self, at: 0x230) == 0x20_0000)
        #expect(page.get(UInt64.self, at: 0x258) == 0x100_0000)
        #expect(page.get(UInt32.self, at: 0x238) == 2048)
        #expect(page[0x211] == 0x81)
        #expect(page[0x210] == 0xFF)
        #expect(page.get(UInt32.self, at: 0x228) == 0x20000)
        #expect(page.get(UInt32.self, at: 0x218) == UInt32(initrd.address))
        #expect(page.get(UInt32.self, at: 0x21C) == 10000)
        #expect(initrd.address == (128 << 20) - 0x3000)
        #expect(try memory.readBytes(at: initrd.address, count: 10000).allSatisfy { $0 == 7 })
    }

    @Test func highInitrdUsesExtFields() throws {
        let cmdline = BootCommandLine(address: 0x20000, length: 0)
        let params = try BootParams(setupHeader: nil, commandLine: cmdline,
                                    initrd: Initrd(address: 0x1_2345_6000, size: 0x1_0000_0010), memoryMap: [])
        #expect(params.bytes.get(UInt32.self, at: 0x218) == 0x2345_6000)
        #expect(params.bytes.get(UInt32.self, at: 0x0C0) == 1)
        #expect(params.bytes.get(UInt32.self, at: 0x21C) == 0x10)
        #expect(params.bytes.get(UInt32.self, at: 0x0C4) == 1)
        #expect(throws: BootSetupError.tooManyMemoryMapEntries(count: 129, limit: 128)) {
            try BootParams(setupHeader: nil, commandLine: cmdline, initrd: nil,
                           memoryMap: Array(repeating: E820Entry(address: 0, size: 1, kind: .ram), count: 129))
        }
    }

    @Test func commandLineLimits() throws {
        let memory = try bootTestMemory(size: 16 << 20)
        #expect(throws: BootSetupError.commandLineTooLong(length: 11, limit: 10)) {
            try BootCommandLine.write("hello world", limit: 10, into: memory)
        }
        let max = String(repeating: "x", count: 0xFFFF)
        #expect(try BootCommandLine.write(max, limit: 1 << 20, into: memory).length == 0xFFFF)
        #expect(try memory.read(UInt8.self, at: 0x2FFFF) == 0)
        #expect(throws: BootSetupError.commandLineTooLong(length: 0x10000, limit: 0xFFFF)) {
            try BootCommandLine.write(max + "x", limit: 1 << 20, into: memory)
        }
        #expect(throws: BootSetupError.commandLineContainsNUL(offset: 2)) {
            try BootCommandLine.write("ab\u{0}cd", into: memory)
        }
    }

    @Test func initrdPlacement() throws {
        let memory = try bootTestMemory(size: 64 << 20)
        let kernel: Range<UInt64> = 0x100_0000..<0x140_0000
        // As high as possible, page-aligned.
        let top = try Initrd.place(size: 0x1800, kernel: kernel, addressMax: nil, in: memory)
        #expect(top.address == (64 << 20) - 0x2000)
        // initrd_addr_max caps the last byte.
        let capped = try Initrd.place(size: 0x1000, kernel: kernel, addressMax: 0x2FF_FFFF, in: memory)
        #expect(capped.address == 0x300_0000 - 0x1000)
        // Does not fit above the kernel: goes below it.
        let below = try Initrd.place(size: 0x20_0000, kernel: 0x100_0000..<0x3F0_0000, addressMax: nil, in: memory)
        #expect(below.address == 0x100_0000 - 0x20_0000)
        // Fits nowhere.
        #expect(throws: BootSetupError.self) {
            try Initrd.place(size: 0x300_0000, kernel: 0x100_0000..<0x200_0000, addressMax: nil, in: memory)
        }
        #expect(throws: BootSetupError.emptyInitrd) { try Initrd.place(size: 0, kernel: kernel, addressMax: nil, in: memory) }
        // Never above the MMIO hole start, even with lots of RAM.
        let big = try bootTestMemory(size: 0xC000_0000, high: 1 << 30)
        let high = try Initrd.place(size: 0x1000, kernel: kernel, addressMax: nil, in: big)
        #expect(high.address == 0xC000_0000 - 0x1000)
    }
}

@Suite struct BootPVHTests {
    @Test func startInfoLayout() throws {
        #expect(PVHStartInfo.Offset.magic == 0 && PVHStartInfo.Offset.version == 4 && PVHStartInfo.Offset.flags == 8)
        #expect(PVHStartInfo.Offset.nrModules == 0xC && PVHStartInfo.Offset.modlistPaddr == 0x10)
        #expect(PVHStartInfo.Offset.cmdlinePaddr == 0x18 && PVHStartInfo.Offset.rsdpPaddr == 0x20)
        #expect(PVHStartInfo.Offset.memmapPaddr == 0x28 && PVHStartInfo.Offset.memmapEntries == 0x30)
        #expect(PVHStartInfo.size == 0x38)
        #expect(BootLayout.pvhMemoryMap >= BootLayout.pvhStartInfo + UInt64(PVHStartInfo.size))
        #expect(BootLayout.pvhMemoryMap + UInt64(BootLayout.pvhMemoryMapMaxEntries * PVHStartInfo.memoryMapEntrySize) <= BootLayout.pvhModuleList)
        #expect(BootLayout.pvhModuleList + UInt64(BootLayout.pvhModuleListMaxEntries * PVHStartInfo.moduleEntrySize) <= BootLayout.zeroPage)

        let memory = try bootTestMemory(size: 256 << 20)
        let map = try E820Map.entries(for: memory)
        let info = try PVHStartInfo(commandLine: BootCommandLine(address: 0x20000, length: 5),
                                    initrd: Initrd(address: 0x800_0000, size: 0x4321), memoryMap: map)
        try info.write(into: memory)
        let raw = try memory.readBytes(at: 0x6000, count: PVHStartInfo.size)
        #expect(raw.get(UInt32.self, at: 0) == 0x336E_C578)
        #expect(raw.get(UInt32.self, at: 4) == 1)
        #expect(raw.get(UInt32.self, at: 8) == 0)
        #expect(raw.get(UInt32.self, at: 0xC) == 1)
        #expect(raw.get(UInt64.self, at: 0x10) == BootLayout.pvhModuleList)
        #expect(raw.get(UInt64.self, at: 0x18) == 0x20000)
        #expect(raw.get(UInt64.self, at: 0x20) == 0)
        #expect(raw.get(UInt64.self, at: 0x28) == 0x6040)
        #expect(raw.get(UInt32.self, at: 0x30) == 3)
        #expect(raw.get(UInt32.self, at: 0x34) == 0)

        let module = try memory.readBytes(at: BootLayout.pvhModuleList, count: 32)
        #expect(module.get(UInt64.self, at: 0) == 0x800_0000)
        #expect(module.get(UInt64.self, at: 8) == 0x4321)
        #expect(module.get(UInt64.self, at: 16) == 0 && module.get(UInt64.self, at: 24) == 0)

        let memmap = try memory.readBytes(at: 0x6040, count: 3 * 24)
        for (i, entry) in map.enumerated() {
            #expect(memmap.get(UInt64.self, at: i * 24) == entry.address)
            #expect(memmap.get(UInt64.self, at: i * 24 + 8) == entry.size)
            #expect(memmap.get(UInt32.self, at: i * 24 + 16) == entry.kind.rawValue)
            #expect(memmap.get(UInt32.self, at: i * 24 + 20) == 0)
        }
    }

    @Test func noInitrdMeansNoModules() throws {
        let info = try PVHStartInfo(commandLine: nil, initrd: nil, memoryMap: [])
        #expect(info.startInfo.get(UInt32.self, at: 0xC) == 0)
        #expect(info.startInfo.get(UInt64.self, at: 0x10) == 0)
        #expect(info.startInfo.get(UInt64.self, at: 0x18) == 0)
        #expect(info.moduleList.isEmpty)
        #expect(throws: BootSetupError.self) {
            try PVHStartInfo(commandLine: nil, initrd: nil,
                             memoryMap: Array(repeating: E820Entry(address: 0, size: 1, kind: .ram), count: 65))
        }
    }
}

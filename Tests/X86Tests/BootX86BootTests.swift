import KVM
import Memory
import Testing
@testable import X86

@Suite struct BootX86BootTests {
    @Test func bzImageWithInitrd() throws {
        let memory = try bootTestMemory(size: 256 << 20)
        let kernel = BootTestBzImage.build()
        let boot = try X86Boot.prepare(kernel: kernel, initrd: [UInt8](repeating: 0x42, count: 5000),
                                       commandLine: "console=ttyS0", cpuCount: 2, into: memory)
        #expect(boot.bootProtocol == .linux64)
        #expect(boot.entry == 0x100_0200)
        let initrd = try #require(boot.initrd)
        #expect(initrd.address == (256 << 20) - 0x2000)
        #expect(try memory.read(UInt32.self, at: 0x7000 + 0x202) == 0x5372_6448)
        #expect(try memory.read(UInt32.self, at: 0x7000 + 0x218) == UInt32(initrd.address))
        #expect(try memory.read(UInt32.self, at: 0x7000 + 0x228) == 0x20000)
        #expect(try memory.read(UInt64.self, at: 0x510) == BootGDT.code64Descriptor)
        #expect(try memory.read(UInt64.self, at: 0x9000) == 0xA003)
        #expect(try memory.readBytes(at: 0x9FC00, count: 4) == Array("_MP_".utf8))
        let state = boot.cpuState(basedOn: SpecialRegisters())
        #expect(state.registers.rip == 0x100_0200 && state.registers.rsi == 0x7000)
    }

    @Test func elfPicksProtocols() throws {
        let memory = try bootTestMemory(size: 64 << 20)
        let vmlinux = BootTestELF.build(entry: 0x100000, notes: [.linux, .pvh(0x100040)]).image
        let auto = try X86Boot.prepare(kernel: vmlinux, initrd: nil, commandLine: "", cpuCount: 1, into: memory)
        #expect(auto.bootProtocol == .linux64 && auto.entry == 0x100000 && auto.initrd == nil)

        let pvh = try X86Boot.prepare(kernel: vmlinux, initrd: [1, 2, 3], commandLine: "quiet", cpuCount: 4,
                                      bootProtocol: .pvh, into: memory)
        #expect(pvh.bootProtocol == .pvh && pvh.entry == 0x100040)
        #expect(try memory.read(UInt32.self, at: 0x6000) == PVHStartInfo.magic)
        #expect(try memory.read(UInt32.self, at: 0x600C) == 1)
        let state = pvh.cpuState(basedOn: SpecialRegisters())
        #expect(state.registers.rbx == 0x6000 && state.specialRegisters.cs.selector == 0x08)

        let elf32 = BootTestELF.build(is64: false, notes: [.pvh32(0x100010)]).image
        #expect(try X86Boot.prepare(kernel: elf32, initrd: nil, commandLine: "", cpuCount: 1, into: memory).bootProtocol == .pvh)

        let noPVH = BootTestELF.build(is64: false, notes: nil).image
        #expect(throws: X86BootError.protocolUnavailable(.pvh)) {
            try X86Boot.prepare(kernel: noPVH, initrd: nil, commandLine: "", cpuCount: 1, into: memory)
        }
        #expect(throws: X86BootError.setup(.cpuCountOutOfRange(requested: 255, limit: 254))) {
            try X86Boot.prepare(kernel: vmlinux, initrd: nil, commandLine: "", cpuCount: 255, into: memory)
        }
        #expect(throws: X86BootError.self) {
            try X86Boot.prepare(kernel: [0x50, 0x4B, 3, 4], initrd: nil, commandLine: "", cpuCount: 1, into: memory)
        }
    }

    @Test func bzImageCommandLineLimitIsEnforced() throws {
        let memory = try bootTestMemory(size: 64 << 20)
        let kernel = BootTestBzImage.build(cmdlineSize: 8)
        #expect(throws: X86BootError.setup(.commandLineTooLong(length: 9, limit: 8))) {
            try X86Boot.prepare(kernel: kernel, initrd: nil, commandLine: "123456789", cpuCount: 1, into: memory)
        }
    }
}

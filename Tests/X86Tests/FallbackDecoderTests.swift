import Testing
import KVM
import X86

@Suite struct FallbackDecoderTests {
    typealias Decoder = InstructionDecoder

    /// (bytes, mode, expected length) for length determination across opcode maps and immediates.
    static let lengths: [([UInt8], InstructionDecoder.Mode, Int)] = [
        ([0xcc], .bits64, 1),
        ([0x0f, 0x01, 0xca], .bits64, 3),
        ([0xf3, 0x48, 0x0f, 0xb8, 0xc1], .bits64, 5),
        ([0xf3, 0x0f, 0xb8, 0x04, 0x25, 0x00, 0x10, 0x00, 0x00], .bits64, 9),
        ([0x48, 0x8b, 0x05, 0x10, 0x00, 0x00, 0x00], .bits64, 7),
        ([0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8], .bits64, 10),          // mov rax, imm64
        ([0xb8, 1, 2, 3, 4], .bits64, 5),
        ([0x66, 0xb8, 0x34, 0x12], .bits64, 4),
        ([0xc7, 0x04, 0x24, 1, 2, 3, 4], .bits64, 7),                 // mov dword [rsp], imm32
        ([0x66, 0xc7, 0x04, 0x24, 0x34, 0x12], .bits64, 6),
        ([0x48, 0x81, 0xc4, 0x00, 0x01, 0x00, 0x00], .bits64, 7),     // add rsp, imm32
        ([0x48, 0x83, 0xec, 0x08], .bits64, 4),                       // sub rsp, imm8
        ([0xf6, 0xc1, 0x01], .bits64, 3),                             // test cl, 1
        ([0xf6, 0xd1], .bits64, 2),                                   // not cl
        ([0xf7, 0xc1, 1, 2, 3, 4], .bits64, 6),                       // test ecx, imm32
        ([0xf7, 0xd9], .bits64, 2),                                   // neg ecx
        ([0xe8, 0, 0, 0, 0], .bits64, 5),
        ([0x0f, 0x84, 0, 0, 0, 0], .bits64, 6),
        ([0x66, 0x0f, 0x84, 0, 0], .bits32, 5),                       // jz rel16
        ([0xc8, 0x10, 0x00, 0x01], .bits64, 4),                       // enter
        ([0xc2, 0x08, 0x00], .bits64, 3),                             // ret imm16
        ([0xa1, 1, 2, 3, 4, 5, 6, 7, 8], .bits64, 9),                 // mov eax, moffs64
        ([0x67, 0xa1, 1, 2, 3, 4], .bits64, 6),
        ([0xa1, 1, 2, 3, 4], .bits32, 5),
        ([0x9a, 1, 2, 3, 4, 5, 6], .bits32, 7),                       // call far ptr16:32
        ([0x0f, 0x3a, 0x0f, 0xc1, 0x08], .bits64, 5),                 // palignr
        ([0x66, 0x0f, 0x38, 0x00, 0xc1], .bits64, 5),                 // pshufb
        ([0x66, 0x0f, 0x73, 0xd8, 0x08], .bits64, 5),                 // psrldq imm8
        ([0x0f, 0xba, 0xe0, 0x03], .bits64, 4),                       // bt eax, 3
        ([0x0f, 0x1f, 0x44, 0x00, 0x00], .bits64, 5),
        ([0x66, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0], .bits64, 9),
        ([0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0], .bits64, 10),
        ([0x48, 0x0f, 0xae, 0x2f], .bits64, 4),                       // xrstor64 [rdi]
        ([0xf3, 0x0f, 0x1e, 0xfa], .bits64, 4),                       // endbr64
        ([0x0f, 0xa2], .bits64, 2),
        ([0x0f, 0x30], .bits64, 2),
        ([0xe4, 0x60], .bits64, 2),
        ([0x8f, 0xc0], .bits64, 2),                                   // pop rax (8F /0)
        ([0x40], .bits32, 1),                                         // inc eax outside 64-bit mode
        ([0xc4, 0x00], .bits32, 2),                                   // les eax, [eax]
        ([0x62, 0x00], .bits32, 2),                                   // bound eax, [eax]
        ([0x66, 0x0f, 0x78, 0xc1, 0x04, 0x08], .bits64, 6),           // extrq imm8, imm8
        ([0x0f, 0x78, 0xc1], .bits64, 3),                             // vmread
        ([0x0f, 0x22, 0xd8], .bits64, 3),                             // mov cr3, rax
        ([0x0f, 0x20, 0x04], .bits64, 3),                             // mov rsp, cr0: mod is ignored, no SIB
        ([0x0f, 0x21, 0x80], .bits32, 3),                             // mov eax, dr0: no disp32 either
    ]

    @Test(arguments: lengths)
    func lengthDetermination(_ bytes: [UInt8], _ mode: InstructionDecoder.Mode, _ length: Int) throws {
        #expect(try FallbackTestGuest.decode(bytes, mode).length == length)
        // Extra trailing bytes never change the length.
        #expect(try FallbackTestGuest.decode(bytes + [0x90, 0x90, 0x90], mode).length == length)
    }

    @Test func popcntFieldsWithRex() throws {
        let i = try FallbackTestGuest.decode([0xf3, 0x4d, 0x0f, 0xb8, 0xc7])   // popcnt r8, r15
        #expect(i.map == .map0F && i.opcode == 0xb8)
        #expect(i.prefixes.rep && i.prefixes.lastRepeat == 0xf3 && i.prefixes.count == 1)
        #expect(i.rex == 0x4d && i.rexW && i.rexR && i.rexB && !i.rexX)
        #expect(i.operandSize == 8 && i.addressSize == 8)
        #expect(i.modrm?.reg == 8 && i.modrm?.rm == 15 && i.modrm?.isRegister == true)
        #expect(i.memory == nil)
    }

    @Test func rexOnlyCountsDirectlyBeforeTheOpcode() throws {
        // REX followed by a legacy prefix is ignored.
        let cancelled = try FallbackTestGuest.decode([0x48, 0xf3, 0x0f, 0xb8, 0xc1])
        #expect(cancelled.rex == 0 && cancelled.operandSize == 4 && cancelled.length == 5)
        // Several REX bytes: the last one counts.
        let last = try FallbackTestGuest.decode([0x41, 0x48, 0x8b, 0x00])
        #expect(last.rex == 0x48 && last.memory?.base == 0)
        // Outside 64-bit mode 0x48 is an instruction (dec eax), not a prefix.
        #expect(try FallbackTestGuest.decode([0x48, 0x8b, 0x00], .bits32).length == 1)
    }

    @Test func prefixesInAnyOrderAndRepeated() throws {
        let i = try FallbackTestGuest.decode([0x2e, 0x66, 0x67, 0x64, 0x66, 0xf2, 0xf3, 0x3e, 0x0f, 0xb8, 0x00])
        #expect(i.prefixes.count == 8)
        #expect(i.prefixes.operandSize && i.prefixes.addressSize && i.prefixes.repne && i.prefixes.rep)
        #expect(i.prefixes.lastRepeat == 0xf3)
        #expect(i.prefixes.segment == .fs)            // DS/CS overrides are null prefixes in 64-bit mode
        #expect(i.operandSize == 2 && i.addressSize == 4)
        #expect(i.memory?.segment == .fs && i.memory?.segmentOverridden == true)
        #expect(i.length == 11)
        // In 32-bit mode the last segment override wins.
        let i32 = try FallbackTestGuest.decode([0x64, 0x26, 0x8b, 0x00], .bits32)
        #expect(i32.memory?.segment == .es)
        // F3 then F2: F2 is the one that acts as mandatory prefix.
        #expect(try FallbackTestGuest.decode([0xf3, 0xf2, 0x0f, 0xb8, 0xc1]).prefixes.lastRepeat == 0xf2)
    }

    @Test func sibForms() throws {
        // mov eax, [rbp+rcx*4+0x10]
        var m = try #require(try FallbackTestGuest.decode([0x8b, 0x44, 0x8d, 0x10]).memory)
        #expect(m.base == 5 && m.index == 1 && m.scale == 4 && m.displacement == 0x10 && m.segment == .ss)
        // [rsp]: index 100 means none
        m = try #require(try FallbackTestGuest.decode([0x8b, 0x04, 0x24]).memory)
        #expect(m.base == 4 && m.index == nil && m.displacement == 0)
        // [r12*8+0x100] with no base: REX.X makes index 100 a real register (r12)
        m = try #require(try FallbackTestGuest.decode([0x42, 0x8b, 0x04, 0xe5, 0x00, 0x01, 0x00, 0x00]).memory)
        #expect(m.base == nil && m.index == 12 && m.scale == 8 && m.displacement == 0x100)
        // [disp32] via SIB (no base, no index)
        let absolute = try FallbackTestGuest.decode([0x8b, 0x04, 0x25, 0x78, 0x56, 0x34, 0x12])
        #expect(absolute.memory?.base == nil && absolute.memory?.index == nil && absolute.memory?.ripRelative == false)
        #expect(absolute.memory?.displacement == 0x1234_5678 && absolute.displacementSize == 4)
        // [rax+disp32] with mod=00 SIB base=101: no base, index rax
        m = try #require(try FallbackTestGuest.decode([0x8b, 0x04, 0x05, 0xf0, 0xff, 0xff, 0xff]).memory)
        #expect(m.base == nil && m.index == 0 && m.scale == 1 && m.displacement == -16)
        // [r13+disp8+r12]: SIB base=101 with REX.B and mod=01 is r13
        m = try #require(try FallbackTestGuest.decode([0x43, 0x8b, 0x44, 0x25, 0x08]).memory)
        #expect(m.base == 13 && m.index == 12 && m.displacement == 8)
        // [r12] needs a SIB; [r13] needs a disp8
        #expect(try FallbackTestGuest.decode([0x41, 0x8b, 0x04, 0x24]).memory?.base == 12)
        let r13 = try FallbackTestGuest.decode([0x41, 0x8b, 0x45, 0x00])
        #expect(r13.memory?.base == 13 && r13.length == 4)
        // negative disp32
        m = try #require(try FallbackTestGuest.decode([0x8b, 0x83, 0x00, 0xff, 0xff, 0xff]).memory)
        #expect(m.base == 3 && m.displacement == -256)
    }

    @Test func ripRelative() throws {
        let i = try FallbackTestGuest.decode([0x48, 0x8b, 0x05, 0x10, 0x00, 0x00, 0x00])
        #expect(i.memory?.ripRelative == true && i.memory?.base == nil && i.memory?.displacement == 0x10)
        var registers = Registers()
        registers.rip = 0x1000
        #expect(i.effectiveAddress(registers) == 0x1000 + 7 + 0x10)   // relative to the next instruction
        // REX.B does not turn mod=00 rm=101 into [r13]
        #expect(try FallbackTestGuest.decode([0x49, 0x8b, 0x05, 0, 0, 0, 0]).memory?.ripRelative == true)
        // With 67 the address wraps at 32 bits.
        let i32 = try FallbackTestGuest.decode([0x67, 0x8b, 0x05, 0xff, 0xff, 0xff, 0x7f])
        registers.rip = 0xffff_ffff_8000_0000
        #expect(i32.effectiveAddress(registers) == (0x8000_0000 + 7 + 0x7fff_ffff) & 0xffff_ffff)
        // Outside 64-bit mode the same encoding is an absolute disp32.
        let abs = try FallbackTestGuest.decode([0x8b, 0x05, 0x00, 0x10, 0x00, 0x00], .bits32)
        #expect(abs.memory?.ripRelative == false && abs.memory?.base == nil && abs.effectiveAddress(registers) == 0x1000)
    }

    @Test func sixteenBitAddressing() throws {
        // 32-bit mode with 67: [bx+0x10]
        var i = try FallbackTestGuest.decode([0x66, 0x67, 0x8b, 0x47, 0x10], .bits32)
        #expect(i.addressSize == 2 && i.operandSize == 2 && i.length == 5)
        #expect(i.memory?.base == 3 && i.memory?.index == nil && i.memory?.displacement == 0x10)
        // 16-bit mode: [bp-2] uses SS
        i = try FallbackTestGuest.decode([0x8b, 0x46, 0xfe], .bits16)
        #expect(i.memory?.base == 5 && i.memory?.segment == .ss && i.memory?.displacement == -2)
        // [disp16]
        i = try FallbackTestGuest.decode([0x8b, 0x06, 0x34, 0x12], .bits16)
        #expect(i.memory?.base == nil && i.memory?.displacement == 0x1234 && i.length == 4)
        // [bx+si+disp16] wraps at 64 KiB
        i = try FallbackTestGuest.decode([0x8b, 0x80, 0x00, 0x80], .bits16)
        var registers = Registers()
        registers.rbx = 0x1_9000
        registers.rsi = 0x1000
        #expect(i.effectiveAddress(registers) == (0x9000 + 0x1000 + 0x8000 - 0x1_0000))
        // 16-bit mode with 67 uses 32-bit forms: [esp]
        i = try FallbackTestGuest.decode([0x67, 0x8b, 0x04, 0x24], .bits16)
        #expect(i.addressSize == 4 && i.memory?.base == 4 && i.length == 4 && i.operandSize == 2)
    }

    @Test func truncatedBytesAreAnErrorNotACrash() {
        let cases: [[UInt8]] = [
            [], [0xf3], [0xf3, 0x0f], [0x48], [0x0f, 0x01], [0x8b, 0x04], [0x8b, 0x44, 0x24],
            [0xb8, 1, 2], [0x48, 0x8b, 0x05, 0x10, 0x00], [0x0f, 0x38], [0x0f, 0x3a, 0x0f, 0xc1],
        ]
        for bytes in cases {
            #expect(FallbackTestGuest.decodeResult(bytes) == .failure(.truncated(available: bytes.count)),
                    "\(bytes)")
        }
        // In 32-bit mode C4 needs the next byte to tell LES from VEX.
        #expect(FallbackTestGuest.decodeResult([0xc4], .bits32) == .failure(.truncated(available: 1)))
    }

    @Test func fifteenByteLimit() throws {
        let fourteenPrefixes = [UInt8](repeating: 0x66, count: 14)
        #expect(try FallbackTestGuest.decode(fourteenPrefixes + [0x90]).length == 15)
        let fifteenPrefixes = [UInt8](repeating: 0x66, count: 15)
        #expect(FallbackTestGuest.decodeResult(fifteenPrefixes + [0x90]) == .failure(.tooLong))
        // A 15-byte buffer that ends inside an instruction needing a 16th byte is too long, not truncated.
        #expect(FallbackTestGuest.decodeResult([0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x48, 0xb8,
                                                1, 2, 3, 4, 5, 6, 7]) == .failure(.tooLong))
    }

    @Test func vexAndInvalidOpcodes() {
        #expect(FallbackTestGuest.decodeResult([0xc5, 0xf8, 0x77]) == .failure(.vexEncoded(prefix: 0xc5)))
        #expect(FallbackTestGuest.decodeResult([0xc4, 0xe2, 0x79, 0x18, 0x00]) == .failure(.vexEncoded(prefix: 0xc4)))
        #expect(FallbackTestGuest.decodeResult([0x62, 0xf1, 0x7c, 0x48]) == .failure(.vexEncoded(prefix: 0x62)))
        #expect(FallbackTestGuest.decodeResult([0xc5, 0xf8, 0x77], .bits32) == .failure(.vexEncoded(prefix: 0xc5)))
        #expect(FallbackTestGuest.decodeResult([0x8f, 0xe9, 0x78, 0x01]) == .failure(.vexEncoded(prefix: 0x8f)))
        #expect(FallbackTestGuest.decodeResult([0x06]) == .failure(.invalidOpcode(map: .primary, opcode: 0x06)))
        #expect(FallbackTestGuest.decodeResult([0x0f, 0x0a]) == .failure(.invalidOpcode(map: .map0F, opcode: 0x0a)))
        #expect((try? FallbackTestGuest.decode([0x06], .bits32))?.length == 1)   // push es is fine in 32-bit
    }

    @Test func operandAndAddressSizes() throws {
        #expect(try FallbackTestGuest.decode([0x8b, 0xc1]).operandSize == 4)
        #expect(try FallbackTestGuest.decode([0x66, 0x8b, 0xc1]).operandSize == 2)
        #expect(try FallbackTestGuest.decode([0x66, 0x48, 0x8b, 0xc1]).operandSize == 8)   // REX.W beats 66
        #expect(try FallbackTestGuest.decode([0x8b, 0xc1], .bits32).operandSize == 4)
        #expect(try FallbackTestGuest.decode([0x66, 0x8b, 0xc1], .bits32).operandSize == 2)
        #expect(try FallbackTestGuest.decode([0x8b, 0xc1], .bits16).operandSize == 2)
        #expect(try FallbackTestGuest.decode([0x66, 0x8b, 0xc1], .bits16).operandSize == 4)
        #expect(try FallbackTestGuest.decode([0x67, 0x8b, 0x00], .bits32).addressSize == 2)
    }

    @Test func modeFromSegmentRegisters() {
        #expect(InstructionDecoder.Mode(FallbackTestGuest.longMode()) == .bits64)
        #expect(InstructionDecoder.Mode(FallbackTestGuest.protected32()) == .bits32)
        #expect(InstructionDecoder.Mode(FallbackTestGuest.protected16()) == .bits16)
        var compat = FallbackTestGuest.longMode()
        compat.cs.l = 0
        compat.cs.db = 1
        #expect(InstructionDecoder.Mode(compat) == .bits32)
        #expect(InstructionDecoder.Mode(SpecialRegisters()) == .bits16)   // real mode
    }

    @Test func mnemonicTable() throws {
        func name(_ bytes: [UInt8]) throws -> Mnemonic? { Mnemonic(try FallbackTestGuest.decode(bytes)) }
        #expect(try name([0x48, 0x0f, 0xae, 0x2f]) == .xrstor)
        #expect(try name([0x0f, 0xae, 0x27]) == .xsave)
        #expect(try name([0x0f, 0xae, 0x37]) == .xsaveopt)
        #expect(try name([0x0f, 0xae, 0xe8]) == .lfence)
        #expect(try name([0x0f, 0xc7, 0xf0]) == .rdrand)
        #expect(try name([0x0f, 0xc7, 0xf8]) == .rdseed)
        #expect(try name([0xf3, 0x0f, 0xc7, 0xf8]) == .rdpid)
        #expect(try name([0x0f, 0x30]) == .wrmsr)
        #expect(try name([0x0f, 0x32]) == .rdmsr)
        #expect(try name([0x0f, 0xa2]) == .cpuid)
        #expect(try name([0xe4, 0x60]) == .in)
        #expect(try name([0xee]) == .out)
        #expect(try name([0xf4]) == .hlt)
        #expect(try name([0x0f, 0x01, 0xf8]) == .swapgs)
        #expect(try name([0xf3, 0x0f, 0x01, 0xca]) == .eretu)
        #expect(try name([0x0f, 0xbc, 0xc1]) == .bsf)
        #expect(try name([0xf3, 0x0f, 0xbc, 0xc1]) == .tzcnt)
        #expect(try name([0x41, 0x90]) == nil)            // xchg r8d, eax
        #expect(try name([0x0f, 0x1f, 0x48, 0x00]) == nil) // 0F 1F /1 is not the documented NOP
    }
}

import Testing
import KVM
import Memory
import X86

/// Register-operand and control-flow behaviour of `InstructionFallback.emulate`.
@Suite struct FallbackEmulationTests {
    static let cf: UInt64 = 1 << 0, pf: UInt64 = 1 << 2, af: UInt64 = 1 << 4, zf: UInt64 = 1 << 6
    static let sf: UInt64 = 1 << 7, of: UInt64 = 1 << 11, rf: UInt64 = 1 << 16, ac: UInt64 = 1 << 18
    static let ud = PendingException(vector: 6)

    let memory: GuestMemory
    let special = FallbackTestGuest.longMode()

    init() throws { memory = try FallbackTestGuest.memory() }

    func run(_ bytes: [UInt8], _ registers: inout Registers, special: SpecialRegisters? = nil) -> FallbackOutcome {
        FallbackTestGuest.emulate(bytes, &registers, special ?? self.special, memory)
    }

    @Test func int3AdvancesAndInjectsBreakpoint() {
        var registers = FallbackTestGuest.registers()
        #expect(run([0xcc], &registers) == .inject(PendingException(vector: 3), faultAddress: nil))
        #expect(registers.rip == 0x1001)
        // LOCK int3 is #UD and RIP stays.
        registers.rip = 0x1000
        #expect(run([0xf0, 0xcc], &registers) == .inject(Self.ud, faultAddress: nil))
        #expect(registers.rip == 0x1000)
    }

    @Test func clacAndStac() {
        var registers = FallbackTestGuest.registers()
        registers.rflags = 0x2 | Self.ac | Self.rf
        #expect(run([0x0f, 0x01, 0xca], &registers) == .emulated(.clac))
        #expect(registers.rflags == 0x2 && registers.rip == 0x1003)   // AC and RF cleared
        #expect(run([0x0f, 0x01, 0xcb], &registers) == .emulated(.stac))
        #expect(registers.rflags == 0x2 | Self.ac && registers.rip == 0x1006)
    }

    @Test func clacIsPrivileged() {
        var registers = FallbackTestGuest.registers()
        let user = FallbackTestGuest.longMode(cpl: 3)
        #expect(run([0x0f, 0x01, 0xca], &registers, special: user) == .inject(Self.ud, faultAddress: nil))
        #expect(run([0x0f, 0x01, 0xcb], &registers, special: user) == .inject(Self.ud, faultAddress: nil))
        #expect(run([0xf0, 0x0f, 0x01, 0xcb], &registers) == .inject(Self.ud, faultAddress: nil))
        #expect(registers.rip == 0x1000 && registers.rflags == 0x2)
    }

    @Test func popcntRegisterSizes() {
        var registers = FallbackTestGuest.registers()
        registers.rcx = 0xf0f0_0000_0000_0001
        #expect(run([0xf3, 0x48, 0x0f, 0xb8, 0xc1], &registers) == .emulated(.popcnt))   // popcnt rax, rcx
        #expect(registers.rax == 9 && registers.rip == 0x1005)

        // 32-bit destination zero-extends; the source is only the low 32 bits.
        registers.rax = .max
        #expect(run([0xf3, 0x0f, 0xb8, 0xc1], &registers) == .emulated(.popcnt))
        #expect(registers.rax == 1)

        // 16-bit destination keeps bits 63:16.
        registers.rax = 0xaaaa_bbbb_cccc_dddd
        registers.rcx = 0xffff_0000_0000_00ff
        #expect(run([0x66, 0xf3, 0x0f, 0xb8, 0xc1], &registers) == .emulated(.popcnt))
        #expect(registers.rax == 0xaaaa_bbbb_cccc_0008)
    }

    @Test func popcntExtendedRegisters() {
        var registers = FallbackTestGuest.registers()
        registers.r15 = 0xffff_ffff_ffff_ffff
        #expect(run([0xf3, 0x4d, 0x0f, 0xb8, 0xc7], &registers) == .emulated(.popcnt))   // popcnt r8, r15
        #expect(registers.r8 == 64)
        registers.rcx = 0x7
        registers.r9 = .max
        #expect(run([0xf3, 0x44, 0x0f, 0xb8, 0xc9], &registers) == .emulated(.popcnt))   // popcnt r9d, ecx
        #expect(registers.r9 == 3)
        registers.r10 = 0x3
        #expect(run([0xf3, 0x41, 0x0f, 0xb8, 0xc2], &registers) == .emulated(.popcnt))   // popcnt eax, r10d
        #expect(registers.rax == 2)
    }

    @Test func popcntFlags() {
        var registers = FallbackTestGuest.registers()
        let others = Self.cf | Self.pf | Self.af | Self.sf | Self.of
        registers.rflags = 0x2 | others
        registers.rcx = 0
        #expect(run([0xf3, 0x48, 0x0f, 0xb8, 0xc1], &registers) == .emulated(.popcnt))
        #expect(registers.rflags == 0x2 | Self.zf && registers.rax == 0)
        registers.rflags = 0x2 | others | Self.zf
        registers.rcx = 0x10
        _ = run([0xf3, 0x48, 0x0f, 0xb8, 0xc1], &registers)
        #expect(registers.rflags == 0x2 && registers.rax == 1)
    }

    @Test func lzcnt() {
        var registers = FallbackTestGuest.registers()
        registers.rcx = 1
        #expect(run([0xf3, 0x48, 0x0f, 0xbd, 0xc1], &registers) == .emulated(.lzcnt))
        #expect(registers.rax == 63 && registers.rflags & (Self.cf | Self.zf) == 0)
        registers.rcx = 0
        _ = run([0xf3, 0x48, 0x0f, 0xbd, 0xc1], &registers)
        #expect(registers.rax == 64 && registers.rflags & Self.cf != 0 && registers.rflags & Self.zf == 0)
        registers.rcx = 1 << 63
        _ = run([0xf3, 0x48, 0x0f, 0xbd, 0xc1], &registers)
        #expect(registers.rax == 0 && registers.rflags & Self.zf != 0 && registers.rflags & Self.cf == 0)
        // 32-bit: only the low half counts.
        registers.rcx = 0x1_0000_0000
        _ = run([0xf3, 0x0f, 0xbd, 0xc1], &registers)
        #expect(registers.rax == 32 && registers.rflags & Self.cf != 0)
        // 16-bit
        registers.rax = 0xffff_0000
        registers.rcx = 1
        _ = run([0x66, 0xf3, 0x0f, 0xbd, 0xc1], &registers)
        #expect(registers.rax == 0xffff_000f)
    }

    @Test func tzcnt() {
        var registers = FallbackTestGuest.registers()
        registers.rcx = 0x100
        #expect(run([0xf3, 0x48, 0x0f, 0xbc, 0xc1], &registers) == .emulated(.tzcnt))
        #expect(registers.rax == 8 && registers.rflags & (Self.cf | Self.zf) == 0)
        registers.rcx = 0
        _ = run([0xf3, 0x48, 0x0f, 0xbc, 0xc1], &registers)
        #expect(registers.rax == 64 && registers.rflags & Self.cf != 0 && registers.rflags & Self.zf == 0)
        registers.rcx = 1
        _ = run([0xf3, 0x48, 0x0f, 0xbc, 0xc1], &registers)
        #expect(registers.rax == 0 && registers.rflags & Self.zf != 0 && registers.rflags & Self.cf == 0)
        registers.rcx = 0x1_0000_0000
        _ = run([0x66, 0xf3, 0x0f, 0xbc, 0xc1], &registers)
        #expect(registers.rax == 16 && registers.rflags & Self.cf != 0)
        // tzcnt r11, r12
        registers.r12 = 0x8000
        #expect(run([0xf3, 0x4d, 0x0f, 0xbc, 0xdc], &registers) == .emulated(.tzcnt))
        #expect(registers.r11 == 15)
    }

    @Test func bsfAndBsr() {
        var registers = FallbackTestGuest.registers()
        registers.rcx = 0x0000_0100_0000_0100
        #expect(run([0x48, 0x0f, 0xbc, 0xc1], &registers) == .emulated(.bsf))
        #expect(registers.rax == 8 && registers.rflags & Self.zf == 0)
        #expect(run([0x48, 0x0f, 0xbd, 0xc1], &registers) == .emulated(.bsr))
        #expect(registers.rax == 40)
        // Zero source: ZF set and the destination is left alone.
        registers.rax = 0x1234
        registers.rcx = 0
        _ = run([0x0f, 0xbc, 0xc1], &registers)
        #expect(registers.rax == 0x1234 && registers.rflags & Self.zf != 0)
    }

    @Test func fwait() {
        var registers = FallbackTestGuest.registers()
        #expect(run([0x9b], &registers) == .emulated(.fwait))
        #expect(registers.rip == 0x1001)
        var special = self.special
        special.cr0 |= 0b1010   // MP and TS: #NM
        #expect(run([0x9b], &registers, special: special) == .inject(PendingException(vector: 7), faultAddress: nil))
        #expect(registers.rip == 0x1001)
    }

    @Test func ud2AndFriendsFault() {
        var registers = FallbackTestGuest.registers()
        #expect(run([0x0f, 0x0b], &registers) == .inject(Self.ud, faultAddress: nil))
        #expect(run([0x0f, 0xb9, 0x00], &registers) == .inject(Self.ud, faultAddress: nil))
        #expect(run([0x06], &registers) == .inject(Self.ud, faultAddress: nil))   // undefined in 64-bit mode
        #expect(registers.rip == 0x1000)
    }

    @Test func nops() {
        var registers = FallbackTestGuest.registers()
        let cases: [([UInt8], Mnemonic)] = [
            ([0x90], .nop), ([0x66, 0x90], .nop), ([0x0f, 0x1f, 0x00], .nop), ([0x0f, 0x1f, 0x44, 0x00, 0x00], .nop),
            ([0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0], .nop), ([0xf3, 0x90], .pause),
            ([0xf3, 0x0f, 0x1e, 0xfa], .endbr64),
        ]
        var rip: UInt64 = 0x1000
        for (bytes, mnemonic) in cases {
            #expect(run(bytes, &registers) == .emulated(mnemonic))
            rip += UInt64(bytes.count)
            #expect(registers.rip == rip)
        }
        // A NOP never touches memory, even when its ModRM names an unmapped address.
        registers.rax = 0x60_0000
        #expect(run([0x0f, 0x1f, 0x00], &registers) == .emulated(.nop))
        #expect(run([0xf0, 0x90], &registers) == .inject(Self.ud, faultAddress: nil))
    }

    @Test func tooLongIsGeneralProtection() {
        var registers = FallbackTestGuest.registers()
        let bytes = [UInt8](repeating: 0x66, count: 15) + [0x90]
        #expect(run(bytes, &registers) == .inject(PendingException(vector: 13, errorCode: 0), faultAddress: nil))
        #expect(registers.rip == 0x1000)
    }

    @Test func compatibilityAndSixteenBitModes() {
        var registers = FallbackTestGuest.registers(rip: 0xffff_fffd)
        registers.rcx = 0xff
        registers.rax = 0xdead_beef_0000_0000
        #expect(run([0xf3, 0x0f, 0xb8, 0xc1], &registers, special: FallbackTestGuest.protected32()) == .emulated(.popcnt))
        #expect(registers.rax == 8)
        #expect(registers.rip == 0x1)                         // EIP wraps at 4 GiB
        registers.rip = 0xfffe
        #expect(run([0xf3, 0x0f, 0xb8, 0xc1], &registers, special: FallbackTestGuest.protected16()) == .emulated(.popcnt))
        #expect(registers.rip == 0x2 && registers.rax & 0xffff == 8)   // IP wraps at 64 KiB
    }

    @Test func unsupportedNamesTheInstructionAndBytes() {
        var registers = FallbackTestGuest.registers(rip: 0xffff_ffff_8100_0000)
        let expectations: [([UInt8], Mnemonic?, String)] = [
            ([0x48, 0x0f, 0xae, 0x2f], .xrstor, "cannot emulate xrstor [rdi] at rip 0xffffffff81000000 (bytes 48 0f ae 2f)"),
            ([0x0f, 0xae, 0x64, 0x24, 0x40], .xsave, "cannot emulate xsave [rsp+0x40] at rip 0xffffffff81000000 (bytes 0f ae 64 24 40)"),
            ([0x0f, 0xc7, 0xf0], .rdrand, "cannot emulate rdrand at rip 0xffffffff81000000 (bytes 0f c7 f0)"),
            ([0x0f, 0xa2], .cpuid, "cannot emulate cpuid at rip 0xffffffff81000000 (bytes 0f a2)"),
            ([0x0f, 0x30], .wrmsr, "cannot emulate wrmsr at rip 0xffffffff81000000 (bytes 0f 30)"),
            ([0xec], .in, "cannot emulate in at rip 0xffffffff81000000 (bytes ec)"),
            ([0xf4], .hlt, "cannot emulate hlt at rip 0xffffffff81000000 (bytes f4)"),
            ([0x65, 0x48, 0x0f, 0xae, 0x34, 0x8d, 0xf8, 0xff, 0xff, 0xff], .xsaveopt,
             "cannot emulate xsaveopt gs:[rcx*4-0x8] at rip 0xffffffff81000000 (bytes 65 48 0f ae 34 8d f8 ff ff ff)"),
            ([0x0f, 0x05], .syscall, "cannot emulate syscall at rip 0xffffffff81000000 (bytes 0f 05)"),
            ([0x66, 0x0f, 0x01, 0xca], .clac,
             "cannot emulate clac at rip 0xffffffff81000000: 66 prefix (bytes 66 0f 01 ca)"),
            ([0x0f, 0xa5, 0xc1], nil, "cannot emulate unknown instruction (opcode 0f a5) at rip 0xffffffff81000000 (bytes 0f a5 c1)"),
            ([0xc5, 0xf8, 0x77], nil, "cannot emulate unsupported VEX instruction at rip 0xffffffff81000000 (bytes c5 f8 77)"),
            ([0x0f, 0x01], nil, "cannot decode instruction at rip 0xffffffff81000000: bytes end after 2 (bytes 0f 01)"),
        ]
        for (bytes, mnemonic, text) in expectations {
            let before = registers
            guard case .unsupported(let failure) = run(bytes, &registers) else {
                Issue.record("\(bytes) was handled")
                continue
            }
            #expect(failure.mnemonic == mnemonic)
            #expect(failure.description == text)
            #expect(registers == before)
        }
    }

    @Test func unsupportedReasons() {
        var registers = FallbackTestGuest.registers()
        #expect(run([], &registers) == .unsupported(FallbackFailure(
            reason: .undecodable(.truncated(available: 0)), mnemonic: nil,
            description: "cannot decode instruction at rip 0x1000: bytes end after 0 (no bytes)")))
        if case .unsupported(let failure) = run([0x0f, 0xa2], &registers) {
            #expect(failure.reason == .notEmulated)
        } else { Issue.record("cpuid emulated") }
        if case .unsupported(let failure) = run([0x41, 0x90], &registers) {
            #expect(failure.reason == .unknownInstruction)
        } else { Issue.record("xchg emulated") }
    }
}

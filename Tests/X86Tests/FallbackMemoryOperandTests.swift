import Testing
import KVM
import Memory
import X86

/// Memory source operands: addressing forms, segmentation, paging and failures.
@Suite struct FallbackMemoryOperandTests {
    static func pf(_ code: UInt32, _ address: UInt64) -> FallbackOutcome {
        .inject(PendingException(vector: 14, errorCode: code), faultAddress: address)
    }

    let memory: GuestMemory
    let special = FallbackTestGuest.longMode()

    init() throws {
        memory = try FallbackTestGuest.memory()
        try memory.write(UInt64(0xff), at: 0x8000)                    // popcnt 8
        try memory.write(UInt64(0xffff_ffff_0000_ffff), at: 0x8008)   // 16 in the low dword
        try memory.write(UInt64(0x00ff_00f0), at: 0x8010)
        try memory.write(UInt64(0x7), at: 0x5010)                     // via the 4 KiB page at 0x400000
        try memory.write([0x01, 0x00, 0x00, 0x00], at: 0x5ffc)        // last bytes of linear page 0x400000
        try memory.write([0x03, 0x00, 0x00, 0x00], at: 0x9000)        // first bytes of linear page 0x401000
        try memory.write(UInt64.max, at: 0x6000)                      // what a contiguous (wrong) read would see
    }

    func run(_ bytes: [UInt8], _ registers: inout Registers, special: SpecialRegisters? = nil) -> FallbackOutcome {
        FallbackTestGuest.emulate(bytes, &registers, special ?? self.special, memory)
    }

    /// Runs popcnt-family `bytes` and returns RAX afterwards, expecting `.emulated`.
    func rax(_ bytes: [UInt8], _ setup: (inout Registers) -> Void, special: SpecialRegisters? = nil,
             sourceLocation: SourceLocation = #_sourceLocation) -> UInt64? {
        var registers = FallbackTestGuest.registers()
        setup(&registers)
        let outcome = run(bytes, &registers, special: special)
        guard case .emulated = outcome else {
            Issue.record("\(bytes): \(outcome)", sourceLocation: sourceLocation)
            return nil
        }
        #expect(registers.rip == 0x1000 + UInt64(bytes.count), sourceLocation: sourceLocation)
        return registers.rax
    }

    @Test func addressingForms() {
        // [rbx]
        #expect(rax([0xf3, 0x48, 0x0f, 0xb8, 0x03]) { $0.rbx = 0x8000 } == 8)
        // [rbx+rcx*4+disp8]
        #expect(rax([0xf3, 0x48, 0x0f, 0xb8, 0x44, 0x8b, 0x10]) { $0.rbx = 0x7000; $0.rcx = 0x3fc } == 8)
        // [rbx+rcx*4+disp32]
        #expect(rax([0xf3, 0x48, 0x0f, 0xb8, 0x84, 0x8b, 0x00, 0x01, 0x00, 0x00]) {
            $0.rbx = 0x7000; $0.rcx = 0x3c0
        } == 8)
        // [rip+disp32], relative to the next instruction: 0x1000 + 9 + 0x6ff7 = 0x8000
        #expect(rax([0xf3, 0x48, 0x0f, 0xb8, 0x05, 0xf7, 0x6f, 0x00, 0x00]) { _ in } == 8)
        // SIB without base: [disp32] and [rcx*8+disp32]
        #expect(rax([0xf3, 0x48, 0x0f, 0xb8, 0x04, 0x25, 0x00, 0x80, 0x00, 0x00]) { _ in } == 8)
        #expect(rax([0xf3, 0x48, 0x0f, 0xb8, 0x04, 0xcd, 0x00, 0x70, 0x00, 0x00]) { $0.rcx = 0x200 } == 8)
        // [r13+0] and [r12] through REX.B
        #expect(rax([0xf3, 0x49, 0x0f, 0xb8, 0x45, 0x00]) { $0.r13 = 0x8000 } == 8)
        #expect(rax([0xf3, 0x49, 0x0f, 0xb8, 0x04, 0x24]) { $0.r12 = 0x8000 } == 8)
        // [r8+r9*2-8] through REX.B and REX.X
        #expect(rax([0xf3, 0x4b, 0x0f, 0xb8, 0x44, 0x48, 0xf8]) { $0.r8 = 0x7008; $0.r9 = 0x800 } == 8)
    }

    @Test func memoryOperandSizes() {
        #expect(rax([0xf3, 0x0f, 0xb8, 0x03]) { $0.rbx = 0x8008; $0.rax = .max } == 16)       // 4 bytes
        #expect(rax([0x66, 0xf3, 0x0f, 0xb8, 0x03]) { $0.rbx = 0x8010; $0.rax = 0 } == 4)     // 2 bytes
        #expect(rax([0xf3, 0x48, 0x0f, 0xbd, 0x03]) { $0.rbx = 0x8000 } == 56)                 // lzcnt
        #expect(rax([0xf3, 0x48, 0x0f, 0xbc, 0x03]) { $0.rbx = 0x8010 } == 4)                  // tzcnt
    }

    @Test func fsAndGsOverrides() {
        var special = self.special
        special.fs.base = 0x8000
        special.gs.base = 0x7ff8
        special.ds.base = 0x1000   // ignored in 64-bit mode
        #expect(rax([0x64, 0xf3, 0x48, 0x0f, 0xb8, 0x03], { $0.rbx = 0 }, special: special) == 8)
        #expect(rax([0x65, 0xf3, 0x48, 0x0f, 0xb8, 0x43, 0x08], { $0.rbx = 0 }, special: special) == 8)
        #expect(rax([0x3e, 0xf3, 0x48, 0x0f, 0xb8, 0x03], { $0.rbx = 0x8000 }, special: special) == 8)
        #expect(rax([0xf3, 0x48, 0x0f, 0xb8, 0x03], { $0.rbx = 0x8000 }, special: special) == 8)
    }

    @Test func fourKilobytePagesAndPageCrossing() {
        #expect(rax([0xf3, 0x48, 0x0f, 0xb8, 0x03]) { $0.rbx = 0x40_0010 } == 3)
        // 8 bytes at 0x400ffc: 4 from [0x5ffc] and 4 from [0x9000], not from [0x6000].
        #expect(rax([0xf3, 0x48, 0x0f, 0xb8, 0x03]) { $0.rbx = 0x40_0ffc } == 3)
        #expect(rax([0xf3, 0x48, 0x0f, 0xbd, 0x03]) { $0.rbx = 0x40_0ffc } == 30)   // value 0x3_0000_0001
    }

    @Test func pageFaults() {
        var registers = FallbackTestGuest.registers()
        registers.rax = 0x55
        registers.rbx = 0x60_0000
        let before = registers
        #expect(run([0xf3, 0x48, 0x0f, 0xb8, 0x03], &registers) == Self.pf(0, 0x60_0000))
        #expect(registers == before)   // a fault leaves RIP and the destination alone
        // A 4 KiB PTE that is not present.
        registers.rbx = 0x40_2008
        #expect(run([0xf3, 0x48, 0x0f, 0xb8, 0x03], &registers) == Self.pf(0, 0x40_2008))
        // Crossing from a mapped page into an unmapped one faults on the second page.
        registers.rbx = 0x40_1ffc
        #expect(run([0xf3, 0x48, 0x0f, 0xb8, 0x03], &registers) == Self.pf(0, 0x40_2000))
        #expect(registers == { var r = before; r.rbx = 0x40_1ffc; return r }())
    }

    @Test func userAccessToSupervisorPage() {
        let user = FallbackTestGuest.longMode(cpl: 3)
        var registers = FallbackTestGuest.registers()
        registers.rbx = 0x20_8000
        #expect(run([0xf3, 0x48, 0x0f, 0xb8, 0x03], &registers, special: user) == Self.pf(0b101, 0x20_8000))
        // The same physical bytes through the user mapping are fine at CPL 3, and via either at CPL 0.
        #expect(rax([0xf3, 0x48, 0x0f, 0xb8, 0x03], { $0.rbx = 0x8000 }, special: user) == 8)
        #expect(rax([0xf3, 0x48, 0x0f, 0xb8, 0x03]) { $0.rbx = 0x20_8000 } == 8)
    }

    @Test func smapFollowsRflagsAC() {
        var special = self.special
        special.cr4 |= 1 << 21
        var registers = FallbackTestGuest.registers()
        registers.rbx = 0x8000   // a user page
        #expect(run([0xf3, 0x48, 0x0f, 0xb8, 0x03], &registers, special: special) == Self.pf(0b1, 0x8000))
        // After stac the access is allowed.
        #expect(run([0x0f, 0x01, 0xcb], &registers, special: special) == .emulated(.stac))
        #expect(run([0xf3, 0x48, 0x0f, 0xb8, 0x03], &registers, special: special) == .emulated(.popcnt))
        #expect(registers.rax == 8)
        // Supervisor pages are unaffected.
        #expect(rax([0xf3, 0x48, 0x0f, 0xb8, 0x03], { $0.rbx = 0x20_8000 }, special: special) == 8)
    }

    @Test func operandOutsideRAMIsUnsupportedNotACrash() {
        var registers = FallbackTestGuest.registers()
        registers.rbx = 0x40_3000
        guard case .unsupported(let failure) = run([0xf3, 0x48, 0x0f, 0xb8, 0x03], &registers) else {
            Issue.record("expected unsupported")
            return
        }
        #expect(failure.reason == .operandNotRAM(physicalAddress: 0xfee0_0000))
        #expect(failure.mnemonic == .popcnt)
        #expect(failure.description == "cannot emulate popcnt rax, [rbx] at rip 0x1000: operand at guest-physical "
            + "0xfee00000 is not RAM (bytes f3 48 0f b8 03)")
        #expect(registers.rip == 0x1000)
    }

    @Test func pageTableOutsideRAMIsUnsupported() {
        var registers = FallbackTestGuest.registers()
        registers.rbx = 0x80_0000
        guard case .unsupported(let failure) = run([0xf3, 0x0f, 0xbc, 0x03], &registers) else {
            Issue.record("expected unsupported")
            return
        }
        #expect(failure.reason == .pageTableNotRAM(entryAddress: 0x4000_0000))
        #expect(failure.description.contains("tzcnt eax, [rbx]"))
        #expect(failure.description.contains("page-table entry at guest-physical 0x40000000 is outside guest RAM"))
    }

    @Test func nonCanonicalAddresses() {
        var registers = FallbackTestGuest.registers()
        registers.rbx = 0x8000_0000_0000_0000
        let gp = FallbackOutcome.inject(PendingException(vector: 13, errorCode: 0), faultAddress: nil)
        #expect(run([0xf3, 0x48, 0x0f, 0xb8, 0x03], &registers) == gp)
        // The last byte crosses out of the canonical range.
        registers.rbx = 0x0000_7fff_ffff_fffc
        #expect(run([0xf3, 0x48, 0x0f, 0xb8, 0x03], &registers) == gp)
        // RSP-based: #SS(0).
        registers.rsp = 0x0001_0000_0000_0000
        #expect(run([0xf3, 0x48, 0x0f, 0xb8, 0x04, 0x24], &registers)
            == .inject(PendingException(vector: 12, errorCode: 0), faultAddress: nil))
        #expect(registers.rip == 0x1000)
    }

    @Test func segmentBasesIn32BitMode() {
        var special = FallbackTestGuest.protected32()
        special.ds.base = 0x7000
        special.ss.base = 0x6000
        special.es.base = 0x5000
        // [ebx] through DS
        #expect(rax([0xf3, 0x0f, 0xb8, 0x03], { $0.rbx = 0x1000 }, special: special) == 8)
        // [ebp] defaults to SS
        #expect(rax([0xf3, 0x0f, 0xb8, 0x45, 0x00], { $0.rbp = 0x2000 }, special: special) == 8)
        // [esp+ebx] defaults to SS as well
        #expect(rax([0xf3, 0x0f, 0xb8, 0x04, 0x1c], { $0.rsp = 0x1000; $0.rbx = 0x1000 }, special: special) == 8)
        // ES override
        #expect(rax([0x26, 0xf3, 0x0f, 0xb8, 0x03], { $0.rbx = 0x3000 }, special: special) == 8)
        // Offsets ignore register bits above 31; linear addresses wrap at 4 GiB (0xfffff000 + 0x7000 → 0x6000).
        #expect(rax([0xf3, 0x0f, 0xb8, 0x03], { $0.rbx = 0xdead_0000_0000_1000 }, special: special) == 8)
        #expect(rax([0xf3, 0x0f, 0xb8, 0x03], { $0.rbx = 0xffff_f000 }, special: special) == 32)
        // 67: 16-bit addressing, [bx] ignores bits above 15.
        special.ds.base = 0
        #expect(rax([0x67, 0xf3, 0x0f, 0xb8, 0x07], { $0.rbx = 0x1_8000 }, special: special) == 8)
    }

    @Test func thirtyTwoBitPagingThroughTheFallback() throws {
        // Non-PAE paging with one 4 MiB page mapping linear 0x0040_0000 → physical 0.
        var special = FallbackTestGuest.protected32()
        special.cr0 |= 1 << 31
        special.cr4 = 1 << 4   // PSE
        special.cr3 = 0xa000
        try memory.write(UInt32(0x0000_0083), at: 0xa000 + 1 * 4)
        #expect(rax([0xf3, 0x0f, 0xb8, 0x03], { $0.rbx = 0x40_8000 }, special: special) == 8)
        var registers = FallbackTestGuest.registers()
        registers.rbx = 0x80_0000
        #expect(run([0xf3, 0x0f, 0xb8, 0x03], &registers, special: special) == Self.pf(0, 0x80_0000))
    }
}

import KVM
import Memory

/// The vCPU register state for entering a kernel: 64-bit Linux boot protocol or PVH.
public struct CPUBootState: Equatable, Sendable {
    public var registers: Registers
    public var specialRegisters: SpecialRegisters

    public static let cr0PE: UInt64 = 1 << 0
    public static let cr0ET: UInt64 = 1 << 4
    public static let cr0PG: UInt64 = 1 << 31
    public static let cr4PAE: UInt64 = 1 << 5
    public static let eferLME: UInt64 = 1 << 8
    public static let eferLMA: UInt64 = 1 << 10
    /// RFLAGS with only the always-one bit 1: interrupts off, as both protocols require.
    public static let rflags: UInt64 = 0x2

    /// Writes the GDT and identity page tables both entry modes rely on.
    public static func writeTables(into memory: GuestMemory) throws(BootSetupError) {
        try BootGDT.write(into: memory)
        try IdentityPageTables.write(into: memory)
    }

    /// Long mode with paging on CR3 = 0x9000, CS = 0x10 (L=1), data = 0x18, RIP = entry, RSI = zero page.
    ///
    /// `current` should come from KVM_GET_SREGS: fields not part of the boot state (APIC base,
    /// pending interrupts) are kept, since writing zeroes there would disable the local APIC.
    public static func linux64(entry: UInt64, basedOn current: SpecialRegisters) -> CPUBootState {
        var sregs = base(current)
        sregs.cs = BootGDT.segment(selector: BootGDT.code64Selector)
        sregs.cr0 = cr0PE | cr0ET | cr0PG
        sregs.cr3 = BootLayout.pml4
        sregs.cr4 = cr4PAE
        sregs.efer = eferLME | eferLMA
        var regs = Registers()
        regs.rip = entry
        regs.rsi = BootLayout.zeroPage
        regs.rsp = BootLayout.bootStackTop
        regs.rbp = BootLayout.bootStackTop
        regs.rflags = rflags
        return CPUBootState(registers: regs, specialRegisters: sregs)
    }

    /// 32-bit protected mode, paging off, flat CS = 0x08, data = 0x18, RIP = entry, RBX = hvm_start_info.
    public static func pvh(entry: UInt32, basedOn current: SpecialRegisters) -> CPUBootState {
        var sregs = base(current)
        sregs.cs = BootGDT.segment(selector: BootGDT.code32Selector)
        sregs.cr0 = cr0PE | cr0ET
        sregs.cr3 = 0
        sregs.cr4 = 0
        sregs.efer = 0
        var regs = Registers()
        regs.rip = UInt64(entry)
        regs.rbx = BootLayout.pvhStartInfo
        regs.rsp = BootLayout.bootStackTop
        regs.rflags = rflags
        return CPUBootState(registers: regs, specialRegisters: sregs)
    }

    /// Data segments, TR, LDT, GDTR and IDTR shared by both modes.
    private static func base(_ current: SpecialRegisters) -> SpecialRegisters {
        var sregs = current
        let data = BootGDT.segment(selector: BootGDT.dataSelector)
        sregs.ds = data; sregs.es = data; sregs.fs = data; sregs.gs = data; sregs.ss = data
        // VMX guest-state checks want a usable TR holding a busy TSS (type 11, S=0) ...
        sregs.tr = BootGDT.segment(selector: BootGDT.tssSelector)
        // ... and a usable LDTR to be type 2 (LDT), S=0, present.
        sregs.ldt = Segment(base: 0, limit: 0xFFFF, selector: 0, type: 2, present: 1, s: 0)
        sregs.gdt = BootGDT.table
        // No IDT: interrupts stay off until the kernel installs its own.
        sregs.idt = DescriptorTable(base: 0, limit: 0)
        sregs.cr2 = 0
        return sregs
    }
}

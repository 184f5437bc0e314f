import KVM
import Memory
import X86

/// A 2 MiB guest with identity-style 4-level page tables, shared by the fallback tests.
///
/// Linear layout (physical in brackets):
/// - 0x000000–0x1fffff: 2 MiB user page → [0x000000] (identity)
/// - 0x200000–0x3fffff: 2 MiB supervisor-only page → [0x000000] (alias)
/// - 0x400000: 4 KiB pages via a page table: +0x0000 → [0x5000], +0x1000 → [0x9000] (not contiguous),
///   +0x2000 not present, +0x3000 → [0xfee00000] (not RAM)
/// - 0x600000: not present
/// - 0x800000: PDE points at a page table outside RAM
enum FallbackTestGuest {
    static let pml4: UInt64 = 0x1000
    static let pdpt: UInt64 = 0x2000
    static let pd: UInt64 = 0x3000
    static let pt: UInt64 = 0x4000

    static let present: UInt64 = 1, writable: UInt64 = 2, user: UInt64 = 4, large: UInt64 = 0x80
    static let noExecute: UInt64 = 1 << 63

    static func memory() throws -> GuestMemory {
        let memory = try GuestMemory(layout: [(0, 0x20_0000)])
        try memory.write(pdpt | present | writable | user, at: pml4)
        try memory.write(pd | present | writable | user, at: pdpt)
        try memory.write(0x0 | present | writable | user | large, at: pd + 0 * 8)
        try memory.write(0x0 | present | writable | large, at: pd + 1 * 8)
        try memory.write(pt | present | writable | user, at: pd + 2 * 8)
        try memory.write(0x4000_0000 | present | writable | user, at: pd + 4 * 8)
        try memory.write(0x5000 | present | writable | user, at: pt + 0 * 8)
        try memory.write(0x9000 | present | writable | user, at: pt + 1 * 8)
        try memory.write(0xfee0_0000 | present | writable | user, at: pt + 3 * 8)
        return memory
    }

    /// 64-bit long mode, paging on (CR0.PG|WP|PE, CR4.PAE, EFER.LME|LMA|NXE), CR3 = the PML4 above.
    static func longMode(cpl: UInt8 = 0) -> SpecialRegisters {
        var special = SpecialRegisters()
        special.cr0 = 0x8001_0001
        special.cr4 = 0x20
        special.efer = 0xd00
        special.cr3 = pml4
        special.cs = Segment(base: 0, limit: 0xffff_ffff, selector: cpl == 3 ? 0x33 : 0x10, type: 11, dpl: cpl,
                             l: 1, g: 1)
        return special
    }

    /// 32-bit protected mode, paging off, flat segments unless a test sets bases.
    static func protected32() -> SpecialRegisters {
        var special = SpecialRegisters()
        special.cr0 = 0x11
        special.cs = Segment(base: 0, limit: 0xffff_ffff, selector: 0x8, type: 11, db: 1, g: 1)
        return special
    }

    /// 16-bit protected mode (CS.D = 0), paging off.
    static func protected16() -> SpecialRegisters {
        var special = SpecialRegisters()
        special.cr0 = 0x11
        special.cs = Segment(base: 0, limit: 0xffff, selector: 0x8, type: 11)
        return special
    }

    static func emulate(_ bytes: [UInt8], _ registers: inout Registers, _ special: SpecialRegisters,
                        _ memory: GuestMemory) -> FallbackOutcome {
        bytes.withUnsafeBytes { raw in
            InstructionFallback.emulate(raw, registers: &registers, special: special, memory: memory)
        }
    }

    static func decode(_ bytes: [UInt8], _ mode: InstructionDecoder.Mode = .bits64)
        throws(InstructionDecoder.DecodeError) -> InstructionDecoder.Instruction {
        try decodeResult(bytes, mode).get()
    }

    /// Decode result without throwing, for `#expect` comparisons.
    static func decodeResult(_ bytes: [UInt8], _ mode: InstructionDecoder.Mode = .bits64)
        -> Result<InstructionDecoder.Instruction, InstructionDecoder.DecodeError> {
        bytes.withUnsafeBytes { raw in
            do throws(InstructionDecoder.DecodeError) {
                return .success(try InstructionDecoder.decode(raw, mode: mode))
            } catch { return .failure(error) }
        }
    }

    static func registers(rip: UInt64 = 0x1000) -> Registers {
        var registers = Registers()
        registers.rip = rip
        return registers
    }
}

/// Deterministic generator for the fuzz tests (SplitMix64).
struct FallbackSplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

import KVM
import Memory

/// Emulates, or turns into the right exception, the instructions the host's KVM fails to emulate in guest
/// kernel mode (see docs: "Instructions the host does not emulate").
public enum InstructionFallback {
    private static let invalidOpcode = PendingException(vector: 6)
    private static let breakpoint = PendingException(vector: 3)
    private static let deviceNotAvailable = PendingException(vector: 7)
    private static let generalProtection = PendingException(vector: 13, errorCode: 0)

    /// Handles the instruction at the start of `bytes` (KVM's `internal.data`, up to 15 bytes) for the
    /// vCPU state in `registers`/`special`; memory operands are read through the guest's page tables.
    public static func emulate(_ bytes: UnsafeRawBufferPointer, registers: inout Registers,
                               special: SpecialRegisters, memory: GuestMemory) -> FallbackOutcome {
        let mode = InstructionDecoder.Mode(special)
        let instruction: InstructionDecoder.Instruction
        do {
            instruction = try InstructionDecoder.decode(bytes, mode: mode)
        } catch {
            switch error {
            case .tooLong: return .inject(generalProtection, faultAddress: nil)   // > 15 bytes: #GP(0)
            case .invalidOpcode: return .inject(invalidOpcode, faultAddress: nil)
            case .truncated, .vexEncoded:
                return .unsupported(.undecodable(error, rip: registers.rip, bytes: bytes))
            }
        }
        guard let mnemonic = Mnemonic(instruction) else {
            return .unsupported(.decoded(instruction, mnemonic: nil, reason: .unknownInstruction, detail: nil,
                                         rip: registers.rip, bytes: bytes))
        }
        // None of the emulated instructions accepts LOCK.
        let lockIsUD = instruction.prefixes.lock

        switch mnemonic {
        case .int3:
            if lockIsUD { return .inject(invalidOpcode, faultAddress: nil) }
            advance(&registers, past: instruction)   // #BP is a trap: the guest resumes after int3
            return .inject(breakpoint, faultAddress: nil)

        case .clac, .stac:
            if lockIsUD || special.cpl > 0 || registers.rflags & (1 << 17) != 0 {   // also #UD in virtual-8086
                return .inject(invalidOpcode, faultAddress: nil)
            }
            if instruction.prefixes.operandSize {
                // NP encoding: 66 0F 01 CA/CB is #UD or another instruction; do not guess.
                return .unsupported(.decoded(instruction, mnemonic: mnemonic, reason: .notEmulated,
                                             detail: "66 prefix", rip: registers.rip, bytes: bytes))
            }
            if mnemonic == .clac {
                registers.rflags &= ~FallbackFlags.alignmentCheck
            } else {
                registers.rflags |= FallbackFlags.alignmentCheck
            }
            advance(&registers, past: instruction)
            return .emulated(mnemonic)

        case .popcnt, .lzcnt, .tzcnt, .bsf, .bsr:
            if lockIsUD { return .inject(invalidOpcode, faultAddress: nil) }
            return bitCount(mnemonic, instruction, registers: &registers, special: special, memory: memory,
                            bytes: bytes)

        case .fwait:
            if lockIsUD { return .inject(invalidOpcode, faultAddress: nil) }
            // CR0.MP and CR0.TS both set: #NM. Pending x87 exceptions (#MF) are not visible here.
            if special.cr0 & 0b1010 == 0b1010 { return .inject(deviceNotAvailable, faultAddress: nil) }
            advance(&registers, past: instruction)
            return .emulated(mnemonic)

        case .ud0, .ud1, .ud2:
            return .inject(invalidOpcode, faultAddress: nil)   // a fault: RIP stays on the instruction

        case .nop, .pause, .endbr64, .endbr32:
            if lockIsUD { return .inject(invalidOpcode, faultAddress: nil) }
            advance(&registers, past: instruction)
            return .emulated(mnemonic)

        default:
            return .unsupported(.decoded(instruction, mnemonic: mnemonic, reason: .notEmulated, detail: nil,
                                         rip: registers.rip, bytes: bytes))
        }
    }

    /// popcnt/lzcnt/tzcnt/bsf/bsr: reg ← f(r/m), with the source from a register or guest memory.
    private static func bitCount(_ mnemonic: Mnemonic, _ instruction: InstructionDecoder.Instruction,
                                 registers: inout Registers, special: SpecialRegisters, memory: GuestMemory,
                                 bytes: UnsafeRawBufferPointer) -> FallbackOutcome {
        guard let modrm = instruction.modrm else {
            return .unsupported(.decoded(instruction, mnemonic: mnemonic, reason: .notEmulated, detail: nil,
                                         rip: registers.rip, bytes: bytes))
        }
        let size = instruction.operandSize
        let source: UInt64
        if modrm.isRegister {
            source = FallbackOperands.readRegister(registers, modrm.rm, size: size)
        } else {
            do {
                let linear = try FallbackOperands.linearAddress(instruction, size: size, registers: registers,
                                                                special: special)
                source = try FallbackOperands.readLinear(linear, size: size, mode: instruction.mode,
                                                         registers: registers, special: special, memory: memory)
            } catch {
                return outcome(for: error, instruction, mnemonic: mnemonic, rip: registers.rip, bytes: bytes)
            }
        }
        guard let result = FallbackBitCounting.compute(mnemonic, source: source, size: size, rflags: registers.rflags)
        else {
            return .unsupported(.decoded(instruction, mnemonic: mnemonic, reason: .notEmulated, detail: nil,
                                         rip: registers.rip, bytes: bytes))
        }
        if let value = result.value {
            FallbackOperands.writeRegister(&registers, modrm.reg, size: size, value)
        }
        registers.rflags = result.rflags
        advance(&registers, past: instruction)
        return .emulated(mnemonic)
    }

    /// Maps a memory-operand failure to an exception or an unsupported outcome.
    private static func outcome(for error: FallbackMemoryError, _ instruction: InstructionDecoder.Instruction,
                                mnemonic: Mnemonic, rip: UInt64, bytes: UnsafeRawBufferPointer) -> FallbackOutcome {
        switch error {
        case .exception(let exception, let faultAddress):
            return .inject(exception, faultAddress: faultAddress)
        case .notRAM(let physical):
            return .unsupported(.decoded(
                instruction, mnemonic: mnemonic, reason: .operandNotRAM(physicalAddress: physical),
                detail: "operand at guest-physical " + FallbackText.hex(physical) + " is not RAM",
                rip: rip, bytes: bytes))
        case .tableNotRAM(let entryAddress):
            return .unsupported(.decoded(
                instruction, mnemonic: mnemonic, reason: .pageTableNotRAM(entryAddress: entryAddress),
                detail: "page-table entry at guest-physical " + FallbackText.hex(entryAddress)
                    + " is outside guest RAM",
                rip: rip, bytes: bytes))
        }
    }

    /// Moves RIP past the instruction (wrapping at the code-segment width) and clears RFLAGS.RF,
    /// as completing an instruction does.
    @inline(__always)
    private static func advance(_ registers: inout Registers, past instruction: InstructionDecoder.Instruction) {
        let next = registers.rip &+ UInt64(instruction.length)
        switch instruction.mode {
        case .bits64: registers.rip = next
        case .bits32: registers.rip = next & 0xffff_ffff
        case .bits16: registers.rip = next & 0xffff
        }
        registers.rflags &= ~FallbackFlags.resume
    }
}

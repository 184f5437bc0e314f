import KVM
import Memory

/// Why a memory operand could not be read.
enum FallbackMemoryError: Error {
    /// The guest takes this exception (#PF with CR2, #GP(0), #SS(0)).
    case exception(PendingException, faultAddress: UInt64?)
    /// The operand translated to guest-physical memory that is not RAM.
    case notRAM(physicalAddress: UInt64)
    /// A paging-structure entry lies outside RAM.
    case tableNotRAM(entryAddress: UInt64)
}

/// Register and memory operand access for emulated instructions.
enum FallbackOperands {
    /// Reads the low `size` bytes of a GPR.
    @inline(__always)
    static func readRegister(_ registers: Registers, _ index: UInt8, size: Int) -> UInt64 {
        let value = registers[gpr: Int(index)]
        switch size {
        case 2: return value & 0xffff
        case 4: return value & 0xffff_ffff
        default: return value
        }
    }

    /// Writes a GPR the way x86 does: 32-bit writes zero-extend, 16-bit writes keep bits 63:16.
    @inline(__always)
    static func writeRegister(_ registers: inout Registers, _ index: UInt8, size: Int, _ value: UInt64) {
        let i = Int(index)
        switch size {
        case 2: registers[gpr: i] = (registers[gpr: i] & ~0xffff) | (value & 0xffff)
        case 4: registers[gpr: i] = value & 0xffff_ffff
        default: registers[gpr: i] = value
        }
    }

    /// The linear address of the instruction's memory operand, with segmentation applied.
    ///
    /// 64-bit mode: only FS/GS bases apply and both ends of the access must be canonical.
    /// Otherwise: the segment base applies and the result wraps at 4 GiB (limits are not checked).
    static func linearAddress(_ instruction: InstructionDecoder.Instruction, size: Int, registers: Registers,
                              special: SpecialRegisters) throws(FallbackMemoryError) -> UInt64 {
        guard let operand = instruction.memory, let offset = instruction.effectiveAddress(registers) else {
            throw .exception(PendingException(vector: 6), faultAddress: nil)
        }
        if instruction.mode == .bits64 {
            var linear = offset
            switch operand.segment {
            case .fs: linear = linear &+ special.fs.base
            case .gs: linear = linear &+ special.gs.base
            default: break
            }
            let topBit: UInt64 = special.cr4 & (1 << 12) != 0 ? 56 : 47
            let first = Int64(bitPattern: linear) >> topBit
            let last = Int64(bitPattern: linear &+ UInt64(size - 1)) >> topBit
            guard (first == 0 || first == -1) && first == last else {
                // A stack-based reference (RSP/RBP base) raises #SS(0) instead of #GP(0).
                let vector: UInt8 = operand.segment == .ss && !operand.segmentOverridden ? 12 : 13
                throw .exception(PendingException(vector: vector, errorCode: 0), faultAddress: nil)
            }
            return linear
        }
        let base: UInt64
        switch operand.segment {
        case .es: base = special.es.base
        case .cs: base = special.cs.base
        case .ss: base = special.ss.base
        case .ds: base = special.ds.base
        case .fs: base = special.fs.base
        case .gs: base = special.gs.base
        }
        return (offset &+ base) & 0xffff_ffff
    }

    /// Reads `size` (1…8) bytes at `linear` for a data read, translating each page the access touches.
    static func readLinear(_ linear: UInt64, size: Int, mode: InstructionDecoder.Mode, registers: Registers,
                           special: SpecialRegisters, memory: GuestMemory) throws(FallbackMemoryError) -> UInt64 {
        let access = PageWalker.Access(.read, alignmentCheck: registers.rflags & (1 << 18) != 0)
        let firstLength = min(size, Int(0x1000 - (linear & 0xfff)))
        let firstPhysical = try translate(linear, access: access, special: special, memory: memory)
        guard firstLength < size else {
            return try readPhysical(firstPhysical, count: size, memory: memory)
        }
        // Split across a page boundary: both pages must translate before any byte is read.
        var second = linear &+ UInt64(firstLength)
        if mode != .bits64 { second &= 0xffff_ffff }
        let secondPhysical = try translate(second, access: access, special: special, memory: memory)
        let low = try readPhysical(firstPhysical, count: firstLength, memory: memory)
        let high = try readPhysical(secondPhysical, count: size - firstLength, memory: memory)
        return low | (high << UInt64(8 * firstLength))
    }

    @inline(__always)
    private static func translate(_ linear: UInt64, access: PageWalker.Access, special: SpecialRegisters,
                                  memory: GuestMemory) throws(FallbackMemoryError) -> UInt64 {
        switch PageWalker.translate(linear, access: access, special: special, memory: memory) {
        case .success(let physical):
            return physical
        case .failure(.pageFault(let fault)):
            throw .exception(fault.exception, faultAddress: fault.address)
        case .failure(.nonCanonical):
            throw .exception(PendingException(vector: 13, errorCode: 0), faultAddress: nil)
        case .failure(.tableOutsideRAM(let entryAddress, _)):
            throw .tableNotRAM(entryAddress: entryAddress)
        }
    }

    /// Reads `count` (1…8) little-endian bytes of guest-physical RAM.
    @inline(__always)
    private static func readPhysical(_ address: UInt64, count: Int,
                                     memory: GuestMemory) throws(FallbackMemoryError) -> UInt64 {
        let view: UnsafeMutableRawBufferPointer
        do { view = try memory.buffer(at: address, length: count) } catch {
            throw .notRAM(physicalAddress: address)
        }
        var value: UInt64 = 0
        for offset in 0..<count {
            value |= UInt64(view[offset]) << UInt64(8 * offset)
        }
        return value
    }
}

// The decoder proper: prefixes → opcode → ModRM/SIB/displacement → immediate.

/// Reads instruction bytes one at a time, refusing to go past the buffer or the 15-byte limit.
struct FallbackByteCursor {
    let bytes: UnsafeRawBufferPointer
    var offset = 0

    static let maximumLength = 15

    @inline(__always)
    func peek() throws(InstructionDecoder.DecodeError) -> UInt8 {
        guard offset < Self.maximumLength else { throw .tooLong }
        guard offset < bytes.count else { throw .truncated(available: bytes.count) }
        return bytes[offset]
    }

    @inline(__always)
    mutating func next() throws(InstructionDecoder.DecodeError) -> UInt8 {
        let byte = try peek()
        offset += 1
        return byte
    }

    /// Reads `count` (≤ 8) bytes as a little-endian value.
    @inline(__always)
    mutating func littleEndian(_ count: Int) throws(InstructionDecoder.DecodeError) -> UInt64 {
        var value: UInt64 = 0
        for shift in 0..<count {
            let byte = try next()
            if shift < 8 { value |= UInt64(byte) << (8 * UInt64(shift)) }
        }
        return value
    }
}

extension InstructionDecoder {
    /// Decodes the instruction at the start of `bytes` (only the first 15 bytes are ever read).
    public static func decode(_ bytes: UnsafeRawBufferPointer, mode: Mode) throws(DecodeError) -> Instruction {
        var cursor = FallbackByteCursor(bytes: bytes)
        var prefixes = Prefixes()
        var rex: UInt8 = 0

        prefixLoop: while true {
            let byte = try cursor.peek()
            switch byte {
            case 0x66: prefixes.operandSize = true
            case 0x67: prefixes.addressSize = true
            case 0xf0: prefixes.lock = true
            case 0xf2: prefixes.repne = true; prefixes.lastRepeat = 0xf2
            case 0xf3: prefixes.rep = true; prefixes.lastRepeat = 0xf3
            case 0x26, 0x2e, 0x36, 0x3e:
                // ES/CS/SS/DS overrides are null prefixes in 64-bit mode.
                if mode != .bits64 { prefixes.segment = SegmentRegister(rawValue: (byte >> 3) & 3) }
            case 0x64: prefixes.segment = .fs
            case 0x65: prefixes.segment = .gs
            case 0x40...0x4f where mode == .bits64:
                rex = byte
                cursor.offset += 1
                continue prefixLoop       // REX counts only if the opcode follows directly
            default:
                break prefixLoop
            }
            prefixes.count += 1
            rex = 0                       // a legacy prefix after REX cancels the REX
            cursor.offset += 1
        }

        var map = OpcodeMap.primary
        var opcode = try cursor.next()
        if opcode == 0x0f {
            let second = try cursor.next()
            switch second {
            case 0x38: map = .map0F38; opcode = try cursor.next()
            case 0x3a: map = .map0F3A; opcode = try cursor.next()
            default: map = .map0F; opcode = second
            }
        } else {
            switch opcode {
            case 0xc4, 0xc5, 0x62:
                // Outside 64-bit mode these are LES/LDS/BOUND unless ModRM.mod is 11.
                if mode == .bits64 { throw .vexEncoded(prefix: opcode) }
                if try cursor.peek() >> 6 == 3 { throw .vexEncoded(prefix: opcode) }
            case 0x8f:
                // POP r/m needs /0; any other reg field is an XOP prefix.
                if try cursor.peek() & 0x38 != 0 { throw .vexEncoded(prefix: opcode) }
            default:
                break
            }
        }

        let operandSize: Int
        let addressSize: Int
        switch mode {
        case .bits64:
            operandSize = rex & 8 != 0 ? 8 : (prefixes.operandSize ? 2 : 4)
            addressSize = prefixes.addressSize ? 4 : 8
        case .bits32:
            operandSize = prefixes.operandSize ? 2 : 4
            addressSize = prefixes.addressSize ? 2 : 4
        case .bits16:
            operandSize = prefixes.operandSize ? 4 : 2
            addressSize = prefixes.addressSize ? 4 : 2
        }

        let hasModRM: Bool
        switch map {
        case .primary:
            if mode == .bits64 && primaryInvalidIn64(opcode) { throw .invalidOpcode(map: map, opcode: opcode) }
            hasModRM = primaryHasModRM(opcode)
        case .map0F:
            if map0FInvalid(opcode) { throw .invalidOpcode(map: map, opcode: opcode) }
            hasModRM = map0FHasModRM(opcode)
        case .map0F38, .map0F3A:
            hasModRM = true
        }

        var modrm: ModRM?
        var memory: MemoryOperand?
        var displacementSize = 0
        if hasModRM {
            let raw = try cursor.next()
            let reg = ((raw >> 3) & 7) | (rex & 4 != 0 ? 8 : 0)
            let rm = (raw & 7) | (rex & 1 != 0 ? 8 : 0)
            // MOV to/from CR/DR (0F 20–23) ignore mod and always name registers: no SIB or displacement.
            let registerOnly = map == .map0F && (0x20...0x23).contains(opcode)
            modrm = ModRM(raw: raw, reg: reg, rm: rm, forcesRegister: registerOnly)
            if raw >> 6 != 3 && !registerOnly {
                let decoded = try decodeMemoryOperand(modrm: raw, rex: rex, addressSize: addressSize, mode: mode,
                                                      prefixes: prefixes, cursor: &cursor)
                memory = decoded.operand
                displacementSize = decoded.displacementSize
            }
        }

        let digit = modrm?.digit ?? 0
        let immediateSize: Int
        switch map {
        case .primary:
            immediateSize = primaryImmediateSize(opcode, digit: digit, operandSize: operandSize,
                                                 addressSize: addressSize, mode: mode)
        case .map0F:
            immediateSize = map0FImmediateSize(opcode, prefixes: prefixes, operandSize: operandSize, mode: mode)
        case .map0F38:
            immediateSize = 0
        case .map0F3A:
            immediateSize = 1
        }
        let immediate = try cursor.littleEndian(immediateSize)

        return Instruction(mode: mode, length: cursor.offset, prefixes: prefixes, rex: rex, map: map,
                           opcode: opcode, modrm: modrm, memory: memory, operandSize: operandSize,
                           addressSize: addressSize, displacementSize: displacementSize,
                           immediateSize: immediateSize, immediate: immediate)
    }

    /// Decodes the SIB byte and displacement of a ModRM memory operand (mod != 11).
    @inline(__always)
    static func decodeMemoryOperand(modrm: UInt8, rex: UInt8, addressSize: Int, mode: Mode, prefixes: Prefixes,
                                    cursor: inout FallbackByteCursor)
        throws(DecodeError) -> (operand: MemoryOperand, displacementSize: Int) {
        let mod = modrm >> 6
        let rmField = modrm & 7
        var operand = MemoryOperand(addressSize: addressSize)
        var displacementSize = 0
        var stackBased = false

        if addressSize == 2 {
            // 16-bit forms: BX/BP plus SI/DI; BP-based ones default to SS.
            switch rmField {
            case 0: operand.base = 3; operand.index = 6
            case 1: operand.base = 3; operand.index = 7
            case 2: operand.base = 5; operand.index = 6; stackBased = true
            case 3: operand.base = 5; operand.index = 7; stackBased = true
            case 4: operand.base = 6
            case 5: operand.base = 7
            case 6:
                if mod == 0 { displacementSize = 2 } else { operand.base = 5; stackBased = true }
            default: operand.base = 3
            }
            if mod == 1 { displacementSize = 1 } else if mod == 2 { displacementSize = 2 }
        } else {
            if rmField == 4 {
                let sib = try cursor.next()
                operand.scale = 1 << (sib >> 6)
                let index = ((sib >> 3) & 7) | (rex & 2 != 0 ? 8 : 0)
                operand.index = index == 4 ? nil : index   // 100 without REX.X: no index (r12 is valid)
                if sib & 7 == 5 && mod == 0 {
                    displacementSize = 4                    // no base, disp32
                } else {
                    let base = (sib & 7) | (rex & 1 != 0 ? 8 : 0)
                    operand.base = base
                    stackBased = base == 4 || base == 5
                }
            } else if rmField == 5 && mod == 0 {
                displacementSize = 4
                operand.ripRelative = mode == .bits64    // disp32 absolute outside 64-bit mode
            } else {
                let base = rmField | (rex & 1 != 0 ? 8 : 0)
                operand.base = base
                stackBased = base == 4 || base == 5
            }
            if mod == 1 { displacementSize = 1 } else if mod == 2 { displacementSize = 4 }
        }

        let raw = try cursor.littleEndian(displacementSize)
        switch displacementSize {
        case 1: operand.displacement = Int64(Int8(truncatingIfNeeded: raw))
        case 2: operand.displacement = Int64(Int16(truncatingIfNeeded: raw))
        case 4: operand.displacement = Int64(Int32(truncatingIfNeeded: raw))
        default: break
        }

        if let segment = prefixes.segment {
            operand.segment = segment
            operand.segmentOverridden = true
        } else {
            operand.segment = stackBased ? .ss : .ds
        }
        return (operand, displacementSize)
    }
}

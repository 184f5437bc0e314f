// Failure messages. Only the failure path formats text, so String allocation here is fine.

enum FallbackText {
    private static let names64 = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                  "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]
    private static let names32 = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi",
                                  "r8d", "r9d", "r10d", "r11d", "r12d", "r13d", "r14d", "r15d"]
    private static let names16 = ["ax", "cx", "dx", "bx", "sp", "bp", "si", "di",
                                  "r8w", "r9w", "r10w", "r11w", "r12w", "r13w", "r14w", "r15w"]

    static func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

    /// "48 0f ae 2f": the first `count` bytes (at most 15).
    static func bytes(_ bytes: UnsafeRawBufferPointer, count: Int) -> String {
        var text = ""
        for offset in 0..<min(count, bytes.count, 15) {
            if offset > 0 { text += " " }
            let byte = bytes[offset]
            if byte < 0x10 { text += "0" }
            text += String(byte, radix: 16)
        }
        return text
    }

    static func register(_ index: UInt8, size: Int) -> String {
        let i = Int(index & 15)
        switch size {
        case 8: return names64[i]
        case 4: return names32[i]
        default: return names16[i]
        }
    }

    /// "fs:[rax+rbx*4+0x10]", "[rip+0x20]", "[0x1000]".
    static func memory(_ operand: InstructionDecoder.MemoryOperand) -> String {
        var text = ""
        if operand.segmentOverridden {
            switch operand.segment {
            case .es: text += "es:"
            case .cs: text += "cs:"
            case .ss: text += "ss:"
            case .ds: text += "ds:"
            case .fs: text += "fs:"
            case .gs: text += "gs:"
            }
        }
        text += "["
        var hasTerm = false
        if operand.ripRelative {
            text += operand.addressSize == 4 ? "eip" : "rip"
            hasTerm = true
        }
        if let base = operand.base {
            text += register(base, size: operand.addressSize)
            hasTerm = true
        }
        if let index = operand.index {
            if hasTerm { text += "+" }
            text += register(index, size: operand.addressSize)
            if operand.scale != 1 { text += "*\(operand.scale)" }
            hasTerm = true
        }
        let displacement = operand.displacement
        if displacement != 0 || !hasTerm {
            if displacement < 0 {
                text += "-" + hex(displacement.magnitude)
            } else {
                if hasTerm { text += "+" }
                text += hex(UInt64(displacement))
            }
        }
        return text + "]"
    }

    /// The mnemonic and, where known, its operands: "popcnt rax, [rbx]", "xrstor [rdi]", "cpuid".
    static func instruction(_ instruction: InstructionDecoder.Instruction, mnemonic: Mnemonic) -> String {
        var text = mnemonic.name
        switch mnemonic {
        case .popcnt, .lzcnt, .tzcnt, .bsf, .bsr:
            if let modrm = instruction.modrm {
                text += " " + register(modrm.reg, size: instruction.operandSize) + ", "
                if let operand = instruction.memory {
                    text += memory(operand)
                } else {
                    text += register(modrm.rm, size: instruction.operandSize)
                }
            }
        default:
            if let operand = instruction.memory { text += " " + memory(operand) }
        }
        return text
    }

    static func opcode(_ instruction: InstructionDecoder.Instruction) -> String {
        opcode(map: instruction.map, opcode: instruction.opcode)
    }

    static func opcode(map: InstructionDecoder.OpcodeMap, opcode: UInt8) -> String {
        let byte = opcode < 0x10 ? "0" + String(opcode, radix: 16) : String(opcode, radix: 16)
        switch map {
        case .primary: return byte
        case .map0F: return "0f " + byte
        case .map0F38: return "0f 38 " + byte
        case .map0F3A: return "0f 3a " + byte
        }
    }

    /// "cannot emulate unsupported VEX instruction" / "cannot decode instruction" … plus a detail.
    static func decodeError(_ error: InstructionDecoder.DecodeError) -> (head: String, detail: String?) {
        switch error {
        case .truncated(let available):
            return ("cannot decode instruction", "bytes end after \(available)")
        case .tooLong:
            return ("cannot decode instruction", "longer than 15 bytes")
        case .vexEncoded(let prefix):
            switch prefix {
            case 0x62: return ("cannot emulate unsupported EVEX instruction", nil)
            case 0x8f: return ("cannot emulate unsupported XOP instruction", nil)
            default: return ("cannot emulate unsupported VEX instruction", nil)
            }
        case .invalidOpcode(let map, let opcode):
            return ("cannot emulate undefined opcode " + FallbackText.opcode(map: map, opcode: opcode), nil)
        }
    }
}

extension FallbackFailure {
    /// A failure for an instruction that decoded: "cannot emulate <insn> at rip 0x… [: detail] (bytes …)".
    static func decoded(_ instruction: InstructionDecoder.Instruction, mnemonic: Mnemonic?, reason: Reason,
                        detail: String?, rip: UInt64, bytes: UnsafeRawBufferPointer) -> FallbackFailure {
        var text = "cannot emulate "
        if let mnemonic {
            text += FallbackText.instruction(instruction, mnemonic: mnemonic)
        } else {
            text += "unknown instruction (opcode " + FallbackText.opcode(instruction) + ")"
        }
        text += " at rip " + FallbackText.hex(rip)
        if let detail { text += ": " + detail }
        text += " (bytes " + FallbackText.bytes(bytes, count: instruction.length) + ")"
        return FallbackFailure(reason: reason, mnemonic: mnemonic, description: text)
    }

    /// A failure for bytes that did not decode.
    static func undecodable(_ error: InstructionDecoder.DecodeError, rip: UInt64,
                            bytes: UnsafeRawBufferPointer) -> FallbackFailure {
        let (head, detail) = FallbackText.decodeError(error)
        var text = head + " at rip " + FallbackText.hex(rip)
        if let detail { text += ": " + detail }
        text += bytes.isEmpty ? " (no bytes)" : " (bytes " + FallbackText.bytes(bytes, count: 15) + ")"
        return FallbackFailure(reason: .undecodable(error), mnemonic: nil, description: text)
    }
}

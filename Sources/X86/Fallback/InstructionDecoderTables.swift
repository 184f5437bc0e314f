// Length-determining properties of opcodes: which have a ModRM byte, which immediates follow,
// and which are undefined. Switches rather than arrays so lookups never touch the heap.

extension InstructionDecoder {
    /// Opcodes of the one-byte map that are #UD in 64-bit mode.
    @inline(__always)
    static func primaryInvalidIn64(_ opcode: UInt8) -> Bool {
        switch opcode {
        case 0x06, 0x07, 0x0e, 0x16, 0x17, 0x1e, 0x1f, 0x27, 0x2f, 0x37, 0x3f,
             0x60, 0x61, 0x82, 0x9a, 0xce, 0xd4, 0xd5, 0xd6, 0xea:
            return true
        default:
            return false
        }
    }

    /// True when a one-byte opcode is followed by ModRM.
    @inline(__always)
    static func primaryHasModRM(_ opcode: UInt8) -> Bool {
        switch opcode {
        case 0x00...0x3f: return opcode & 7 < 4   // ALU r/m forms; x4/x5 are AL/eAX,imm
        case 0x62, 0x63, 0x69, 0x6b, 0x80...0x8f, 0xc0, 0xc1, 0xc4...0xc7, 0xd0...0xd3, 0xd8...0xdf,
             0xf6, 0xf7, 0xfe, 0xff:
            return true
        default:
            return false
        }
    }

    /// Immediate bytes after a one-byte opcode (and its ModRM).
    @inline(__always)
    static func primaryImmediateSize(_ opcode: UInt8, digit: UInt8, operandSize: Int, addressSize: Int,
                                     mode: Mode) -> Int {
        let immZ = operandSize == 2 ? 2 : 4
        switch opcode {
        case 0x00...0x3f:
            switch opcode & 7 {
            case 4: return 1
            case 5: return immZ
            default: return 0
            }
        case 0x68, 0x69, 0x81, 0xa9, 0xc7: return immZ
        case 0x6a, 0x6b, 0x70...0x7f, 0x80, 0x82, 0x83, 0xa8, 0xb0...0xb7, 0xc0, 0xc1, 0xc6, 0xcd,
             0xd4, 0xd5, 0xe0...0xe7, 0xeb:
            return 1
        case 0xb8...0xbf: return operandSize          // mov r, imm: imm64 with REX.W
        case 0xa0...0xa3: return addressSize          // mov moffs
        case 0xc2, 0xca: return 2
        case 0xc8: return 3                           // enter imm16, imm8
        case 0xe8, 0xe9: return mode == .bits64 ? 4 : immZ  // near rel: Intel ignores 66 in 64-bit mode
        case 0x9a, 0xea: return immZ + 2              // far ptr16:16/32
        case 0xf6: return digit < 2 ? 1 : 0           // test r/m8, imm8
        case 0xf7: return digit < 2 ? immZ : 0
        default: return 0
        }
    }

    /// Two-byte (0F xx) opcodes that are undefined on current CPUs.
    @inline(__always)
    static func map0FInvalid(_ opcode: UInt8) -> Bool {
        switch opcode {
        case 0x04, 0x0a, 0x0c, 0x24...0x27, 0x36, 0x39, 0x3b...0x3f, 0x7a, 0x7b, 0xa6, 0xa7:
            return true
        default:
            return false
        }
    }

    /// True when a 0F xx opcode is followed by ModRM.
    @inline(__always)
    static func map0FHasModRM(_ opcode: UInt8) -> Bool {
        switch opcode {
        case 0x05...0x09, 0x0b, 0x0e, 0x30...0x37, 0x77, 0x80...0x8f, 0xa0...0xa2, 0xa8...0xaa, 0xc8...0xcf:
            return false
        default:
            return true
        }
    }

    /// Immediate bytes after a 0F xx opcode (and its ModRM).
    @inline(__always)
    static func map0FImmediateSize(_ opcode: UInt8, prefixes: Prefixes, operandSize: Int, mode: Mode) -> Int {
        switch opcode {
        case 0x0f, 0x70...0x73, 0xa4, 0xac, 0xba, 0xc2, 0xc4...0xc6: return 1
        case 0x78:
            // SSE4a extrq/insertq (66 / F2 0F 78) carry two imm8; plain 0F 78 is vmread.
            return (prefixes.operandSize || prefixes.lastRepeat == 0xf2) ? 2 : 0
        case 0x80...0x8f: return mode == .bits64 || operandSize != 2 ? 4 : 2
        default: return 0
        }
    }
}

import KVM

/// Decodes one x86 instruction into its prefixes, opcode, ModRM/SIB operand and length.
///
/// Everything the decoder produces is a plain value (no heap storage), because it runs on
/// every emulation-failure exit.
public enum InstructionDecoder {}

extension InstructionDecoder {
    /// The code-segment mode that picks default operand and address sizes.
    public enum Mode: Equatable, Sendable {
        case bits16, bits32, bits64

        /// The mode the vCPU is executing in: 64-bit (EFER.LMA and CS.L), else CS.D/B picks 32 or 16.
        public init(_ special: SpecialRegisters) {
            if special.isLongMode64 {
                self = .bits64
            } else {
                self = special.cs.db != 0 ? .bits32 : .bits16
            }
        }
    }

    /// A segment register named by a prefix or chosen by default for a memory operand.
    public enum SegmentRegister: UInt8, Equatable, Sendable {
        case es = 0, cs, ss, ds, fs, gs
    }

    /// Which opcode table the opcode byte indexes.
    public enum OpcodeMap: Equatable, Sendable {
        /// One-byte opcodes.
        case primary
        /// `0F xx`.
        case map0F
        /// `0F 38 xx`.
        case map0F38
        /// `0F 3A xx`.
        case map0F3A
    }

    /// Legacy prefixes seen before the opcode (any order, repeats allowed).
    public struct Prefixes: Equatable, Sendable {
        /// 66: operand-size override (or mandatory prefix).
        public var operandSize = false
        /// 67: address-size override.
        public var addressSize = false
        /// F0.
        public var lock = false
        /// F2 seen.
        public var repne = false
        /// F3 seen.
        public var rep = false
        /// The last of F2/F3 seen (0 if neither): the one that acts as the mandatory prefix.
        public var lastRepeat: UInt8 = 0
        /// Segment override; in 64-bit mode only FS/GS are recorded (the others are null prefixes there).
        public var segment: SegmentRegister?
        /// Number of legacy prefix bytes (REX not included).
        public var count = 0

        /// No prefixes.
        public init() {}
    }

    /// The ModRM byte, with REX.R/REX.B applied to the register numbers.
    public struct ModRM: Equatable, Sendable {
        /// The raw byte.
        public var raw: UInt8
        /// Bits 7:6.
        public var mod: UInt8 { raw >> 6 }
        /// Bits 5:3 without REX: the opcode extension for group opcodes (`/digit`).
        public var digit: UInt8 { (raw >> 3) & 7 }
        /// Bits 2:0 without REX (for `0F 01 CA`-style register forms).
        public var rmField: UInt8 { raw & 7 }
        /// The reg operand's GPR number (0–15), REX.R applied.
        public var reg: UInt8
        /// The r/m operand's GPR number (0–15) when `mod == 3`, REX.B applied.
        public var rm: UInt8
        /// True when the r/m operand is a register (always so for MOV CR/DR, which ignore mod).
        public var isRegister: Bool { mod == 3 || forcesRegister }
        /// Set for opcodes whose r/m is a register whatever mod says (0F 20–23).
        public var forcesRegister = false
    }

    /// Components of a memory operand's effective address (before segmentation).
    public struct MemoryOperand: Equatable, Sendable {
        /// Base GPR number (0–15), nil for no base (disp32 / disp16 absolute, or RIP-relative).
        public var base: UInt8?
        /// Index GPR number (0–15), nil when the SIB index is 100 without REX.X.
        public var index: UInt8?
        /// 1, 2, 4 or 8.
        public var scale: UInt8 = 1
        /// Sign-extended displacement.
        public var displacement: Int64 = 0
        /// `[rip+disp32]`: relative to the next instruction.
        public var ripRelative = false
        /// The segment the access goes through (override, else SS for RSP/RBP-based, else DS).
        public var segment: SegmentRegister = .ds
        /// True when a prefix chose `segment`.
        public var segmentOverridden = false
        /// Address size in bytes: 2, 4 or 8.
        public var addressSize = 8
    }

    /// Why bytes could not be decoded.
    public enum DecodeError: Error, Equatable, Sendable {
        /// The bytes ended before the instruction did; `available` bytes were given.
        case truncated(available: Int)
        /// The instruction would be longer than 15 bytes (#GP on hardware).
        case tooLong
        /// A VEX (C4/C5), EVEX (62) or XOP (8F) encoded instruction; not decoded, length unknown.
        case vexEncoded(prefix: UInt8)
        /// An opcode that is undefined in this mode (#UD on hardware).
        case invalidOpcode(map: OpcodeMap, opcode: UInt8)
    }

    /// One decoded instruction.
    public struct Instruction: Equatable, Sendable {
        /// The mode it was decoded in.
        public var mode: Mode
        /// Total length in bytes (prefixes through immediate), at most 15.
        public var length: Int
        /// Legacy prefixes.
        public var prefixes: Prefixes
        /// The REX byte (0x40–0x4F) when it directly precedes the opcode in 64-bit mode, else 0.
        public var rex: UInt8
        /// The opcode table.
        public var map: OpcodeMap
        /// The opcode byte within `map`.
        public var opcode: UInt8
        /// The ModRM byte, for opcodes that have one.
        public var modrm: ModRM?
        /// The memory operand, when ModRM encodes one.
        public var memory: MemoryOperand?
        /// Operand size in bytes for non-byte operations: 2, 4 or 8.
        public var operandSize: Int
        /// Address size in bytes: 2, 4 or 8.
        public var addressSize: Int
        /// Size in bytes of the displacement field.
        public var displacementSize: Int
        /// Size in bytes of the immediate field(s).
        public var immediateSize: Int
        /// The first up-to-8 immediate bytes, little-endian, zero-extended.
        public var immediate: UInt64

        /// REX.W.
        public var rexW: Bool { rex & 8 != 0 }
        /// REX.R.
        public var rexR: Bool { rex & 4 != 0 }
        /// REX.X.
        public var rexX: Bool { rex & 2 != 0 }
        /// REX.B.
        public var rexB: Bool { rex & 1 != 0 }

        /// The memory operand's effective address (offset within its segment), truncated to the address size;
        /// nil when there is no memory operand. RIP-relative forms count from the next instruction.
        public func effectiveAddress(_ registers: Registers) -> UInt64? {
            guard let memory else { return nil }
            var address = UInt64(bitPattern: memory.displacement)
            if memory.ripRelative {
                address = address &+ registers.rip &+ UInt64(length)
            }
            if let base = memory.base {
                address = address &+ registers[gpr: Int(base)]
            }
            if let index = memory.index {
                address = address &+ registers[gpr: Int(index)] &* UInt64(memory.scale)
            }
            switch memory.addressSize {
            case 2: return address & 0xffff
            case 4: return address & 0xffff_ffff
            default: return address
            }
        }
    }
}

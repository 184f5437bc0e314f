internal import CVireoSystem

/// One classic BPF instruction (the kernel's `struct sock_filter`).
public struct BPFInstruction: Equatable, Sendable, CustomStringConvertible {
    public var code: UInt16
    public var jt: UInt8
    public var jf: UInt8
    public var k: UInt32

    public init(code: UInt16, jt: UInt8 = 0, jf: UInt8 = 0, k: UInt32) {
        self.code = code
        self.jt = jt
        self.jf = jf
        self.k = k
    }

    public var description: String {
        let hex = "0x" + String(k, radix: 16)
        switch code {
        case BPFOpcode.loadWord: return "ld [\(k)]"
        case BPFOpcode.andConstant: return "and \(hex)"
        case BPFOpcode.jumpEqual: return "jeq \(hex) +\(jt) +\(jf)"
        case BPFOpcode.jumpGreaterOrEqual: return "jge \(hex) +\(jt) +\(jf)"
        case BPFOpcode.jumpAnyBitSet: return "jset \(hex) +\(jt) +\(jf)"
        case BPFOpcode.jumpAlways: return "ja +\(k)"
        case BPFOpcode.returnConstant: return "ret \(hex)"
        default: return "op 0x\(String(code, radix: 16)) \(jt) \(jf) \(hex)"
        }
    }
}

/// The opcodes the seccomp assembler emits (values from <linux/filter.h>).
public enum BPFOpcode {
    public static let loadWord = CSYS_BPF_LD_W_ABS
    public static let andConstant = CSYS_BPF_AND_K
    public static let jumpEqual = CSYS_BPF_JEQ_K
    public static let jumpGreaterOrEqual = CSYS_BPF_JGE_K
    public static let jumpAnyBitSet = CSYS_BPF_JSET_K
    public static let jumpAlways = CSYS_BPF_JA
    public static let returnConstant = CSYS_BPF_RET_K
    /// The kernel's limit on one program's length.
    public static let maximumLength = Int(CSYS_BPF_MAXINSNS)
}

/// Why a BPF program could not be assembled.
public enum BPFError: Error, Equatable, CustomStringConvertible {
    case unboundLabel(Int)
    case labelBoundTwice(Int)
    case backwardJump(Int)
    case jumpTooFar(from: Int, distance: Int)
    case tooLong(Int)

    public var description: String {
        switch self {
        case let .unboundLabel(id): return "BPF label \(id) is never bound"
        case let .labelBoundTwice(id): return "BPF label \(id) is bound twice"
        case let .backwardJump(id): return "BPF jump to label \(id) goes backwards"
        case let .jumpTooFar(from, distance): return "BPF conditional jump at \(from) spans \(distance) instructions (max 255)"
        case let .tooLong(count): return "BPF program has \(count) instructions (max \(BPFOpcode.maximumLength))"
        }
    }
}

/// A tiny assembler for classic BPF with forward labels: loads, `and`, conditional and
/// unconditional jumps, returns. Conditional targets are resolved to the 8-bit offsets the
/// kernel wants; a nil target means "the next instruction".
public struct BPFAssembler: Sendable {
    /// A jump target; bind it where the code it names starts.
    public struct Label: Hashable, Sendable { let id: Int }

    /// The test of a conditional jump, against the accumulator.
    public enum Condition: Sendable {
        case equal, greaterOrEqual, anyBitSet

        var opcode: UInt16 {
            switch self {
            case .equal: return BPFOpcode.jumpEqual
            case .greaterOrEqual: return BPFOpcode.jumpGreaterOrEqual
            case .anyBitSet: return BPFOpcode.jumpAnyBitSet
            }
        }
    }

    private enum Item {
        case instruction(BPFInstruction)
        case conditional(Condition, UInt32, onTrue: Label?, onFalse: Label?)
        case always(Label)
        case bind(Label)
    }

    private var items: [Item] = []
    private var labelCount = 0

    public init() {}

    public mutating func newLabel() -> Label {
        labelCount += 1
        return Label(id: labelCount)
    }

    /// Binds `label` to the next instruction emitted.
    public mutating func bind(_ label: Label) { items.append(.bind(label)) }

    /// `ld [offset]`: loads a 32-bit word of struct seccomp_data.
    public mutating func load(offset: UInt32) {
        items.append(.instruction(BPFInstruction(code: BPFOpcode.loadWord, k: offset)))
    }

    /// `and mask`.
    public mutating func and(_ mask: UInt32) {
        items.append(.instruction(BPFInstruction(code: BPFOpcode.andConstant, k: mask)))
    }

    /// Jumps to `onTrue` when `A <condition> value`, else to `onFalse` (nil: fall through).
    public mutating func jump(if condition: Condition, _ value: UInt32, to onTrue: Label?, else onFalse: Label? = nil) {
        items.append(.conditional(condition, value, onTrue: onTrue, onFalse: onFalse))
    }

    /// `ja label`.
    public mutating func jump(to label: Label) { items.append(.always(label)) }

    /// `ret value`.
    public mutating func ret(_ value: UInt32) {
        items.append(.instruction(BPFInstruction(code: BPFOpcode.returnConstant, k: value)))
    }

    /// Resolves labels and returns the program.
    public func assemble() throws(BPFError) -> [BPFInstruction] {
        var positions: [Int: Int] = [:]
        var count = 0
        for item in items {
            if case let .bind(label) = item {
                guard positions[label.id] == nil else { throw .labelBoundTwice(label.id) }
                positions[label.id] = count
            } else {
                count += 1
            }
        }
        guard count <= BPFOpcode.maximumLength else { throw .tooLong(count) }
        func offset(_ label: Label?, from pc: Int, conditional: Bool) throws(BPFError) -> Int {
            guard let label else { return 0 }
            guard let target = positions[label.id] else { throw .unboundLabel(label.id) }
            let distance = target - (pc + 1)
            guard distance >= 0 else { throw .backwardJump(label.id) }
            if conditional && distance > 255 { throw .jumpTooFar(from: pc, distance: distance) }
            return distance
        }
        var program: [BPFInstruction] = []
        program.reserveCapacity(count)
        for item in items {
            let pc = program.count
            switch item {
            case .bind:
                continue
            case let .instruction(instruction):
                program.append(instruction)
            case let .conditional(condition, value, onTrue, onFalse):
                let jt = try offset(onTrue, from: pc, conditional: true)
                let jf = try offset(onFalse, from: pc, conditional: true)
                program.append(BPFInstruction(code: condition.opcode, jt: UInt8(jt), jf: UInt8(jf), k: value))
            case let .always(label):
                let distance = try offset(label, from: pc, conditional: false)
                program.append(BPFInstruction(code: BPFOpcode.jumpAlways, k: UInt32(distance)))
            }
        }
        return program
    }
}

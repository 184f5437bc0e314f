import Testing
@testable import VMM

/// Runs a seccomp BPF program the way the kernel does, over a struct seccomp_data.
struct SeccompData {
    var nr: Int
    var arch: UInt32 = 0xC000_003E  // AUDIT_ARCH_X86_64
    var args: [UInt64] = [0, 0, 0, 0, 0, 0]

    init(_ name: String, _ args: UInt64...) {
        nr = Syscalls.number(name)!
        for (index, value) in args.enumerated() { self.args[index] = value }
    }

    func word(at offset: UInt32) -> UInt32 {
        switch offset {
        case 0: return UInt32(truncatingIfNeeded: nr)
        case 4: return arch
        case 8, 12: return 0
        default:
            let index = Int(offset - 16) / 8
            let value = args[index]
            return offset % 8 == 0 ? UInt32(truncatingIfNeeded: value) : UInt32(truncatingIfNeeded: value >> 32)
        }
    }

    /// The program's return value.
    func run(_ program: [BPFInstruction]) -> UInt32 {
        var pc = 0
        var accumulator: UInt32 = 0
        while pc < program.count {
            let instruction = program[pc]
            pc += 1
            switch instruction.code {
            case BPFOpcode.loadWord: accumulator = word(at: instruction.k)
            case BPFOpcode.andConstant: accumulator &= instruction.k
            case BPFOpcode.jumpAlways: pc += Int(instruction.k)
            case BPFOpcode.jumpEqual: pc += Int(accumulator == instruction.k ? instruction.jt : instruction.jf)
            case BPFOpcode.jumpGreaterOrEqual: pc += Int(accumulator >= instruction.k ? instruction.jt : instruction.jf)
            case BPFOpcode.jumpAnyBitSet: pc += Int(accumulator & instruction.k != 0 ? instruction.jt : instruction.jf)
            case BPFOpcode.returnConstant: return instruction.k
            default: Issue.record("unexpected opcode \(instruction.code)"); return 0
            }
        }
        Issue.record("program fell off its end")
        return 0
    }
}

@Suite struct BPFAssemblerTests {
    @Test func resolvesForwardLabelsToRelativeOffsets() throws {
        var asm = BPFAssembler()
        let yes = asm.newLabel()
        let no = asm.newLabel()
        asm.load(offset: 0)
        asm.jump(if: .equal, 59, to: yes, else: no)
        asm.ret(1)
        asm.bind(yes)
        asm.ret(2)
        asm.bind(no)
        asm.ret(3)
        let program = try asm.assemble()
        #expect(program.count == 5)
        #expect(program[1] == BPFInstruction(code: BPFOpcode.jumpEqual, jt: 1, jf: 2, k: 59))
        #expect(program[0].description == "ld [0]")
        #expect(program[1].description == "jeq 0x3b +1 +2")
        #expect(SeccompData("execve").run(program) == 2)
        #expect(SeccompData("read").run(program) == 3)
    }

    @Test func nilTargetsFallThrough() throws {
        var asm = BPFAssembler()
        let out = asm.newLabel()
        asm.jump(if: .anyBitSet, 4, to: nil, else: out)
        asm.ret(0)
        asm.bind(out)
        asm.ret(1)
        let program = try asm.assemble()
        #expect(program[0].jt == 0 && program[0].jf == 1)
    }

    @Test func rejectsBadPrograms() {
        var unbound = BPFAssembler()
        let label = unbound.newLabel()
        unbound.jump(to: label)
        #expect(throws: BPFError.unboundLabel(1)) { try unbound.assemble() }

        var backwards = BPFAssembler()
        let top = backwards.newLabel()
        backwards.bind(top)
        backwards.ret(0)
        backwards.jump(if: .equal, 1, to: top)
        #expect(throws: BPFError.backwardJump(1)) { try backwards.assemble() }

        var twice = BPFAssembler()
        let once = twice.newLabel()
        twice.bind(once)
        twice.bind(once)
        #expect(throws: BPFError.labelBoundTwice(1)) { try twice.assemble() }

        var far = BPFAssembler()
        let end = far.newLabel()
        far.jump(if: .equal, 1, to: end)
        for _ in 0..<300 { far.ret(0) }
        far.bind(end)
        far.ret(1)
        #expect(throws: BPFError.jumpTooFar(from: 0, distance: 300)) { try far.assemble() }

        var long = BPFAssembler()
        for _ in 0..<(BPFOpcode.maximumLength + 1) { long.ret(0) }
        #expect(throws: BPFError.tooLong(BPFOpcode.maximumLength + 1)) { try long.assemble() }
    }

    @Test func unconditionalJumpsMayBeLong() throws {
        var asm = BPFAssembler()
        let end = asm.newLabel()
        asm.jump(to: end)
        for _ in 0..<300 { asm.ret(0) }
        asm.bind(end)
        asm.ret(1)
        let program = try asm.assemble()
        #expect(program[0].k == 300)
        #expect(SeccompData("read").run(program) == 1)
    }
}

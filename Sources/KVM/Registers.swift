/// General-purpose registers, RIP and RFLAGS of one vCPU (mirrors `struct kvm_regs`).
public struct Registers: Equatable, Sendable {
    public var rax: UInt64 = 0, rbx: UInt64 = 0, rcx: UInt64 = 0, rdx: UInt64 = 0
    public var rsi: UInt64 = 0, rdi: UInt64 = 0, rsp: UInt64 = 0, rbp: UInt64 = 0
    public var r8: UInt64 = 0, r9: UInt64 = 0, r10: UInt64 = 0, r11: UInt64 = 0
    public var r12: UInt64 = 0, r13: UInt64 = 0, r14: UInt64 = 0, r15: UInt64 = 0
    public var rip: UInt64 = 0
    public var rflags: UInt64 = 0x2

    public init() {}

    /// The GPR with x86 encoding `index` (0 = RAX … 15 = R15).
    public subscript(gpr index: Int) -> UInt64 {
        get {
            switch index & 15 {
            case 0: return rax
            case 1: return rcx
            case 2: return rdx
            case 3: return rbx
            case 4: return rsp
            case 5: return rbp
            case 6: return rsi
            case 7: return rdi
            case 8: return r8
            case 9: return r9
            case 10: return r10
            case 11: return r11
            case 12: return r12
            case 13: return r13
            case 14: return r14
            default: return r15
            }
        }
        set {
            switch index & 15 {
            case 0: rax = newValue
            case 1: rcx = newValue
            case 2: rdx = newValue
            case 3: rbx = newValue
            case 4: rsp = newValue
            case 5: rbp = newValue
            case 6: rsi = newValue
            case 7: rdi = newValue
            case 8: r8 = newValue
            case 9: r9 = newValue
            case 10: r10 = newValue
            case 11: r11 = newValue
            case 12: r12 = newValue
            case 13: r13 = newValue
            case 14: r14 = newValue
            default: r15 = newValue
            }
        }
    }
}

/// A segment register as KVM sees it (mirrors `struct kvm_segment`).
public struct Segment: Equatable, Sendable {
    public var base: UInt64 = 0
    public var limit: UInt32 = 0xffff
    public var selector: UInt16 = 0
    public var type: UInt8 = 0
    public var present: UInt8 = 1
    public var dpl: UInt8 = 0
    public var db: UInt8 = 0
    public var s: UInt8 = 1
    public var l: UInt8 = 0
    public var g: UInt8 = 0
    public var avl: UInt8 = 0
    public var unusable: UInt8 = 0

    public init() {}

    public init(base: UInt64, limit: UInt32, selector: UInt16, type: UInt8, present: UInt8 = 1, dpl: UInt8 = 0,
                db: UInt8 = 0, s: UInt8 = 1, l: UInt8 = 0, g: UInt8 = 0) {
        self.base = base; self.limit = limit; self.selector = selector; self.type = type
        self.present = present; self.dpl = dpl; self.db = db; self.s = s; self.l = l; self.g = g
    }
}

/// A descriptor-table register (GDTR/IDTR).
public struct DescriptorTable: Equatable, Sendable {
    public var base: UInt64 = 0
    public var limit: UInt16 = 0
    public init(base: UInt64 = 0, limit: UInt16 = 0) { self.base = base; self.limit = limit }
}

/// Segment, control and system registers of one vCPU (mirrors `struct kvm_sregs`).
public struct SpecialRegisters: Equatable, Sendable {
    public var cs = Segment(), ds = Segment(), es = Segment(), fs = Segment(), gs = Segment(), ss = Segment()
    public var tr = Segment(), ldt = Segment()
    public var gdt = DescriptorTable(), idt = DescriptorTable()
    public var cr0: UInt64 = 0, cr2: UInt64 = 0, cr3: UInt64 = 0, cr4: UInt64 = 0, cr8: UInt64 = 0
    public var efer: UInt64 = 0
    public var apicBase: UInt64 = 0
    /// Pending external interrupt bitmap (256 bits), as KVM reports it.
    public var interruptBitmap: [UInt64] = [0, 0, 0, 0]

    public init() {}

    /// Current privilege level (CS.DPL in protected mode; SS.DPL is equivalent).
    public var cpl: UInt8 { cr0 & 1 == 0 ? 0 : cs.dpl }
    /// True in 64-bit mode (EFER.LMA and CS.L).
    public var isLongMode64: Bool { efer & (1 << 10) != 0 && cs.l == 1 }
}

/// A pending or injected exception as carried by `struct kvm_vcpu_events`.
public struct PendingException: Equatable, Sendable {
    public var vector: UInt8
    public var errorCode: UInt32?
    public init(vector: UInt8, errorCode: UInt32? = nil) { self.vector = vector; self.errorCode = errorCode }
}

internal import CKVM

extension Registers {
    init(_ r: kvm_regs) {
        self.init()
        rax = r.rax; rbx = r.rbx; rcx = r.rcx; rdx = r.rdx; rsi = r.rsi; rdi = r.rdi; rsp = r.rsp; rbp = r.rbp
        r8 = r.r8; r9 = r.r9; r10 = r.r10; r11 = r.r11; r12 = r.r12; r13 = r.r13; r14 = r.r14; r15 = r.r15
        rip = r.rip; rflags = r.rflags
    }

    var raw: kvm_regs {
        var r = kvm_regs()
        r.rax = rax; r.rbx = rbx; r.rcx = rcx; r.rdx = rdx; r.rsi = rsi; r.rdi = rdi; r.rsp = rsp; r.rbp = rbp
        r.r8 = r8; r.r9 = r9; r.r10 = r10; r.r11 = r11; r.r12 = r12; r.r13 = r13; r.r14 = r14; r.r15 = r15
        r.rip = rip; r.rflags = rflags
        return r
    }
}

extension Segment {
    init(_ s: kvm_segment) {
        self.init(base: s.base, limit: s.limit, selector: s.selector, type: s.type, present: s.present,
                  dpl: s.dpl, db: s.db, s: s.s, l: s.l, g: s.g)
        avl = s.avl
        unusable = s.unusable
    }

    var raw: kvm_segment {
        var s = kvm_segment()
        s.base = base; s.limit = limit; s.selector = selector; s.type = type; s.present = present
        s.dpl = dpl; s.db = db; s.s = self.s; s.l = l; s.g = g; s.avl = avl; s.unusable = unusable
        return s
    }
}

extension SpecialRegisters {
    init(_ r: kvm_sregs) {
        self.init()
        cs = Segment(r.cs); ds = Segment(r.ds); es = Segment(r.es); fs = Segment(r.fs); gs = Segment(r.gs)
        ss = Segment(r.ss); tr = Segment(r.tr); ldt = Segment(r.ldt)
        gdt = DescriptorTable(base: r.gdt.base, limit: r.gdt.limit)
        idt = DescriptorTable(base: r.idt.base, limit: r.idt.limit)
        cr0 = r.cr0; cr2 = r.cr2; cr3 = r.cr3; cr4 = r.cr4; cr8 = r.cr8; efer = r.efer; apicBase = r.apic_base
        interruptBitmap = [r.interrupt_bitmap.0, r.interrupt_bitmap.1, r.interrupt_bitmap.2, r.interrupt_bitmap.3]
    }

    var raw: kvm_sregs {
        var r = kvm_sregs()
        r.cs = cs.raw; r.ds = ds.raw; r.es = es.raw; r.fs = fs.raw; r.gs = gs.raw; r.ss = ss.raw
        r.tr = tr.raw; r.ldt = ldt.raw
        r.gdt.base = gdt.base; r.gdt.limit = gdt.limit
        r.idt.base = idt.base; r.idt.limit = idt.limit
        r.cr0 = cr0; r.cr2 = cr2; r.cr3 = cr3; r.cr4 = cr4; r.cr8 = cr8; r.efer = efer; r.apic_base = apicBase
        let bitmap = interruptBitmap + [0, 0, 0, 0]
        r.interrupt_bitmap = (bitmap[0], bitmap[1], bitmap[2], bitmap[3])
        return r
    }
}

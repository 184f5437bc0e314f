import KVM
import Memory
import Testing
@testable import X86

@Suite struct BootCPUStateTests {
    @Test func gdtDescriptors() throws {
        #expect(BootGDT.code32Descriptor == 0x00CF_9B00_0000_FFFF)
        #expect(BootGDT.code64Descriptor == 0x00AF_9B00_0000_FFFF)
        #expect(BootGDT.dataDescriptor == 0x00CF_9300_0000_FFFF)
        #expect(BootGDT.tssDescriptor == 0x0000_8B00_0000_0067)
        #expect(BootGDT.limit == 0x2F)
        #expect(BootGDT.entries[Int(BootGDT.code64Selector >> 3)] == BootGDT.code64Descriptor)
        #expect(BootGDT.entries[Int(BootGDT.dataSelector >> 3)] == BootGDT.dataDescriptor)
        #expect(BootGDT.entries[Int(BootGDT.code32Selector >> 3)] == BootGDT.code32Descriptor)

        let memory = try bootTestMemory(size: 16 << 20)
        try BootGDT.write(into: memory)
        #expect(try memory.read(UInt64.self, at: 0x500) == 0)
        #expect(try memory.read(UInt64.self, at: 0x508) == BootGDT.code32Descriptor)
        #expect(try memory.read(UInt64.self, at: 0x510) == BootGDT.code64Descriptor)
        #expect(try memory.read(UInt64.self, at: 0x518) == BootGDT.dataDescriptor)
        #expect(try memory.read(UInt64.self, at: 0x520) == BootGDT.tssDescriptor)
        #expect(try memory.read(UInt64.self, at: 0x528) == 0)
        #expect(BootLayout.gdt + UInt64(BootGDT.limit) < BootLayout.pvhStartInfo)
    }

    @Test func descriptorRoundTrip() {
        let d = BootGDT.descriptor(base: 0x1234_5678, limit: 0xABCDE, access: 0x93, flags: 0x4)
        let s = BootGDT.segment(descriptor: d, selector: 0x28)
        #expect(s.base == 0x1234_5678 && s.limit == 0xABCDE && s.g == 0 && s.db == 1 && s.type == 3 && s.s == 1)
    }

    @Test func segmentsLookLikeKVMExpects() {
        let code64 = BootGDT.segment(selector: 0x10)
        #expect(code64 == Segment(base: 0, limit: 0xFFFF_FFFF, selector: 0x10, type: 0xB, present: 1, dpl: 0,
                                  db: 0, s: 1, l: 1, g: 1))
        let code32 = BootGDT.segment(selector: 0x08)
        #expect(code32 == Segment(base: 0, limit: 0xFFFF_FFFF, selector: 0x08, type: 0xB, present: 1, dpl: 0,
                                  db: 1, s: 1, l: 0, g: 1))
        let data = BootGDT.segment(selector: 0x18)
        #expect(data == Segment(base: 0, limit: 0xFFFF_FFFF, selector: 0x18, type: 0x3, present: 1, dpl: 0,
                                db: 1, s: 1, l: 0, g: 1))
        let tss = BootGDT.segment(selector: 0x20)
        #expect(tss == Segment(base: 0, limit: 0x67, selector: 0x20, type: 11, present: 1, dpl: 0, db: 0, s: 0, l: 0, g: 0))
    }

    @Test func identityPageTables() throws {
        let memory = try bootTestMemory(size: 16 << 20)
        try IdentityPageTables.write(into: memory)
        #expect(try memory.read(UInt64.self, at: 0x9000) == 0xA003)
        #expect(try memory.read(UInt64.self, at: 0x9008) == 0)
        for i in 0..<4 {
            #expect(try memory.read(UInt64.self, at: 0xA000 + UInt64(i) * 8) == 0xB003 + UInt64(i) * 0x1000)
        }
        #expect(try memory.read(UInt64.self, at: 0xA020) == 0)
        #expect(try memory.read(UInt64.self, at: 0xB000) == 0x83)
        #expect(try memory.read(UInt64.self, at: 0xB008) == 0x20_0083)
        #expect(try memory.read(UInt64.self, at: 0xEFF8) == 0xFFE0_0083)
        // Walk every 2 MiB page: identity, present, writable, supervisor, large.
        for page in 0..<2048 {
            let virtual = UInt64(page) << 21
            let pml4e = try memory.read(UInt64.self, at: 0x9000 + ((virtual >> 39) & 511) * 8)
            let pdpte = try memory.read(UInt64.self, at: (pml4e & ~0xFFF) + ((virtual >> 30) & 511) * 8)
            let pde = try memory.read(UInt64.self, at: (pdpte & ~0xFFF) + ((virtual >> 21) & 511) * 8)
            #expect(pde & ~0xFFF == virtual)
            #expect(pde & 0xFFF == 0x83)
        }
        // Nothing outside the table pages was touched.
        #expect(try memory.readBytes(at: 0xF000, count: 0x1000).allSatisfy { $0 == 0 })
    }

    @Test func linux64EntryState() {
        var current = SpecialRegisters()
        current.apicBase = 0xFEE0_0900
        let state = CPUBootState.linux64(entry: 0x100_0200, basedOn: current)
        let s = state.specialRegisters, r = state.registers
        #expect(s.cr0 == 0x8000_0011)
        #expect(s.cr3 == 0x9000)
        #expect(s.cr4 == 0x20)
        #expect(s.efer == 0x500)
        #expect(s.apicBase == 0xFEE0_0900)
        #expect(s.cs.selector == 0x10 && s.cs.l == 1 && s.cs.db == 0 && s.cs.type == 0xB)
        for segment in [s.ds, s.es, s.fs, s.gs, s.ss] {
            #expect(segment.selector == 0x18 && segment.type == 3 && segment.limit == 0xFFFF_FFFF && segment.g == 1)
        }
        #expect(s.tr.type == 11 && s.tr.s == 0 && s.tr.present == 1)
        #expect(s.ldt.type == 2 && s.ldt.s == 0 && s.ldt.present == 1)
        #expect(s.gdt == DescriptorTable(base: 0x500, limit: 0x2F))
        #expect(s.isLongMode64)
        #expect(s.cpl == 0)
        #expect(r.rip == 0x100_0200 && r.rsi == 0x7000 && r.rflags == 0x2)
    }

    @Test func pvhEntryState() {
        let state = CPUBootState.pvh(entry: 0x100_0040, basedOn: SpecialRegisters())
        let s = state.specialRegisters, r = state.registers
        #expect(s.cr0 == 0x11)
        #expect(s.cr0 & CPUBootState.cr0PG == 0)
        #expect(s.cr4 == 0 && s.efer == 0)
        #expect(s.cs == Segment(base: 0, limit: 0xFFFF_FFFF, selector: 0x08, type: 0xB, present: 1, dpl: 0,
                                db: 1, s: 1, l: 0, g: 1))
        for segment in [s.ds, s.es, s.ss] {
            #expect(segment.selector == 0x18 && segment.db == 1 && segment.limit == 0xFFFF_FFFF)
        }
        #expect(s.tr.type == 11 && s.tr.base == 0 && s.tr.limit == 0x67)
        #expect(!s.isLongMode64)
        #expect(r.rip == 0x100_0040 && r.rbx == 0x6000 && r.rflags == 0x2)
    }
}

@Suite struct BootMPTableTests {
    func sum(_ bytes: ArraySlice<UInt8>) -> UInt8 { bytes.reduce(0, &+) }

    @Test(arguments: [1, 2, 64])
    func tableForCPUs(_ cpus: Int) throws {
        let table = try MPTable(cpuCount: cpus)
        let bytes = table.bytes
        #expect(bytes.count == MPTable.size(cpuCount: cpus))
        // Floating pointer.
        #expect(Array(bytes[0..<4]) == Array("_MP_".utf8))
        #expect(bytes.get(UInt32.self, at: 4) == 0x9FC10)
        #expect(bytes[8] == 1 && bytes[9] == 4)
        #expect(sum(bytes[0..<16]) == 0)
        // Config table header.
        let h = 16
        let length = Int(bytes.get(UInt16.self, at: h + 4))
        #expect(Array(bytes[h..<h + 4]) == Array("PCMP".utf8))
        #expect(length == bytes.count - 16)
        #expect(bytes[h + 6] == 4)
        #expect(sum(bytes[h..<h + length]) == 0)
        #expect(Array(bytes[h + 8..<h + 16]) == Array("VIREO   ".utf8))
        #expect(bytes.get(UInt16.self, at: h + 34) == UInt16(cpus + 20))
        #expect(bytes.get(UInt32.self, at: h + 36) == 0xFEE0_0000)
        #expect(bytes.get(UInt16.self, at: h + 40) == 0)

        // Walk the entries.
        var cursor = h + 44
        var processors = 0, buses = 0, ioapics = 0, irqs: [UInt8] = [], locals = 0
        for _ in 0..<(cpus + 20) {
            switch bytes[cursor] {
            case 0:
                #expect(bytes[cursor + 1] == UInt8(processors))
                #expect(bytes[cursor + 2] == 0x14)
                #expect(bytes[cursor + 3] == (processors == 0 ? 3 : 1))
                #expect(bytes.get(UInt32.self, at: cursor + 4) == 0x600)
                #expect(bytes.get(UInt32.self, at: cursor + 8) == 0x201)
                processors += 1; cursor += 20
            case 1:
                #expect(Array(bytes[cursor + 2..<cursor + 8]) == Array("ISA   ".utf8))
                buses += 1; cursor += 8
            case 2:
                #expect(bytes[cursor + 1] == UInt8(cpus) && bytes[cursor + 2] == 0x11 && bytes[cursor + 3] == 1)
                #expect(bytes.get(UInt32.self, at: cursor + 4) == 0xFEC0_0000)
                ioapics += 1; cursor += 8
            case 3:
                #expect(bytes[cursor + 1] == 0 && bytes.get(UInt16.self, at: cursor + 2) == 0)
                #expect(bytes[cursor + 5] == bytes[cursor + 7])
                #expect(bytes[cursor + 6] == UInt8(cpus))
                irqs.append(bytes[cursor + 5]); cursor += 8
            case 4:
                let kind = bytes[cursor + 1]
                #expect((kind == 3 && bytes[cursor + 7] == 0) || (kind == 1 && bytes[cursor + 7] == 1 && bytes[cursor + 6] == 0xFF))
                locals += 1; cursor += 8
            default:
                Issue.record("unknown entry type \(bytes[cursor])"); return
            }
        }
        #expect(cursor == bytes.count)
        #expect(processors == cpus && buses == 1 && ioapics == 1 && locals == 2)
        #expect(irqs == Array(0..<16))

        let memory = try bootTestMemory(size: 16 << 20)
        try table.write(into: memory)
        #expect(try memory.readBytes(at: 0x9FC00, count: bytes.count) == bytes)
    }

    @Test func sizeLimits() throws {
        // Up to 40 CPUs the table stays within the EBDA's first KiB.
        #expect(MPTable.size(cpuCount: 40) <= 0x400)
        #expect(MPTable.size(cpuCount: 41) > 0x400)
        let largest = try MPTable(cpuCount: 254)
        #expect(BootLayout.ebda + UInt64(largest.bytes.count) <= BootLayout.mpTableEnd)
        #expect(sum(largest.bytes[16...]) == 0)
        #expect(throws: BootSetupError.cpuCountOutOfRange(requested: 255, limit: 254)) { try MPTable(cpuCount: 255) }
        #expect(throws: BootSetupError.cpuCountOutOfRange(requested: 0, limit: 254)) { try MPTable(cpuCount: 0) }
        do { _ = try MPTable(cpuCount: 300) } catch {
            #expect(error.description.contains("1 to 254 CPUs"))
        }
    }
}

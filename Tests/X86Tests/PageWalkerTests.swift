import Testing
import KVM
import Memory
import X86

/// Builds 4- or 5-level page tables in a small guest, allocating tables from 0x10000 upward.
final class PageWalkerTestTables {
    static let p: UInt64 = 1, w: UInt64 = 2, u: UInt64 = 4, ps: UInt64 = 0x80, nx: UInt64 = 1 << 63
    static let addressMask: UInt64 = 0x000f_ffff_ffff_f000

    let memory: GuestMemory
    let levels: Int
    let root: UInt64
    private var next: UInt64 = 0x10000

    init(levels: Int = 4) throws {
        memory = try GuestMemory(layout: [(0, 0x20_0000)])
        self.levels = levels
        root = next
        next += 0x1000
    }

    /// Maps `linear` to `physical` with a leaf at `leafLevel` (1: 4 KiB, 2: 2 MiB, 3: 1 GiB).
    func map(_ linear: UInt64, to physical: UInt64, leafLevel: Int = 1, flags: UInt64 = p | w | u,
             tableFlags: UInt64 = p | w | u) throws {
        var table = root
        for level in stride(from: levels, to: leafLevel, by: -1) {
            let address = table + index(linear, level) * 8
            var entry: UInt64 = try memory.read(at: address)
            if entry & Self.p == 0 {
                entry = next | tableFlags
                next += 0x1000
                try memory.write(entry, at: address)
            }
            table = entry & Self.addressMask
        }
        try memory.write(physical | flags | (leafLevel > 1 ? Self.ps : 0), at: table + index(linear, leafLevel) * 8)
    }

    /// The guest-physical address of the entry for `linear` at `level` (tables must exist above it).
    func entryAddress(_ linear: UInt64, level: Int) throws -> UInt64 {
        var table = root
        for upper in stride(from: levels, to: level, by: -1) {
            let entry: UInt64 = try memory.read(at: table + index(linear, upper) * 8)
            table = entry & Self.addressMask
        }
        return table + index(linear, level) * 8
    }

    func update(_ linear: UInt64, level: Int, _ change: (inout UInt64) -> Void) throws {
        let address = try entryAddress(linear, level: level)
        var entry: UInt64 = try memory.read(at: address)
        change(&entry)
        try memory.write(entry, at: address)
    }

    private func index(_ linear: UInt64, _ level: Int) -> UInt64 { (linear >> UInt64(12 + 9 * (level - 1))) & 0x1ff }

    /// Long-mode control registers for these tables.
    func special(nxe: Bool = true, wp: Bool = true, smep: Bool = false, smap: Bool = false) -> SpecialRegisters {
        var special = SpecialRegisters()
        special.cr0 = 0x8000_0001 | (wp ? 1 << 16 : 0)
        special.cr4 = 0x20 | (levels == 5 ? 1 << 12 : 0) | (smep ? 1 << 20 : 0) | (smap ? 1 << 21 : 0)
        special.efer = 0x500 | (nxe ? 0x800 : 0)
        special.cr3 = root
        special.cs.l = 1
        return special
    }

    func translate(_ linear: UInt64, _ kind: PageWalker.AccessKind = .read, cpl: UInt8 = 0,
                   special: SpecialRegisters? = nil) -> Result<UInt64, PageWalker.Failure> {
        PageWalker.translate(linear, access: PageWalker.Access(kind, cpl: cpl), special: special ?? self.special(),
                             memory: memory)
    }
}

@Suite struct PageWalkerTests {
    typealias T = PageWalkerTestTables
    static func pf(_ code: UInt32, _ address: UInt64) -> Result<UInt64, PageWalker.Failure> {
        .failure(.pageFault(PageWalker.Fault(errorCode: code, address: address)))
    }

    @Test func fourLevelFourKilobytePages() throws {
        let tables = try T()
        try tables.map(0x0000_7f12_3456_7000, to: 0x1_2345_6000)
        try tables.map(0xffff_ffff_8100_0000, to: 0x100_0000)
        #expect(tables.translate(0x0000_7f12_3456_7abc) == .success(0x1_2345_6abc))
        #expect(tables.translate(0xffff_ffff_8100_0123) == .success(0x100_0123))
        #expect(tables.translate(0xffff_ffff_8100_1000) == Self.pf(0, 0xffff_ffff_8100_1000))
        #expect(tables.translate(0x0000_8000_0000_0000) == .failure(.nonCanonical(0x0000_8000_0000_0000)))
    }

    @Test func fiveLevelPaging() throws {
        let tables = try T(levels: 5)
        try tables.map(0x00ab_cdef_1234_5000, to: 0x7000)
        #expect(tables.translate(0x00ab_cdef_1234_5678) == .success(0x7678))
        #expect(tables.translate(0x0100_0000_0000_0000) == .failure(.nonCanonical(0x0100_0000_0000_0000)))
        // The same address is not canonical under 4-level paging.
        var fourLevel = tables.special()
        fourLevel.cr4 &= ~(1 << 12)
        #expect(tables.translate(0x00ab_cdef_1234_5678, special: fourLevel)
            == .failure(.nonCanonical(0x00ab_cdef_1234_5678)))
        // A 1 GiB page under 5 levels.
        try tables.map(0xff00_0000_4000_0000, to: 0x8000_0000, leafLevel: 3)
        #expect(tables.translate(0xff00_0000_5234_5678) == .success(0x9234_5678))
    }

    @Test func largePages() throws {
        let tables = try T()
        try tables.map(0x4020_0000, to: 0x60_0000, leafLevel: 2)
        try tables.map(0x80_4000_0000, to: 0x1_c000_0000, leafLevel: 3)
        #expect(tables.translate(0x4023_4567) == .success(0x63_4567))
        #expect(tables.translate(0x80_5234_5678) == .success(0x1_d234_5678))
        // PAT (bit 12) in a large-page entry is not part of the frame.
        try tables.update(0x4020_0000, level: 2) { $0 |= 0x1000 }
        #expect(tables.translate(0x4020_0010) == .success(0x60_0010))
    }

    @Test func reservedBits() throws {
        let tables = try T()
        try tables.map(0x20_0000, to: 0x20_0000, leafLevel: 2)
        // A 2 MiB frame that is not 2 MiB aligned.
        try tables.update(0x20_0000, level: 2) { $0 |= 0x2000 }
        #expect(tables.translate(0x20_0000) == Self.pf(0b1001, 0x20_0000))
        // PS in a PML4E.
        try tables.map(0x1000, to: 0x1000)
        try tables.update(0x1000, level: 4) { $0 |= T.ps }
        #expect(tables.translate(0x1000, .write) == Self.pf(0b1011, 0x1000))
        // XD set while EFER.NXE is off.
        let other = try T()
        try other.map(0x5000, to: 0x5000, flags: T.p | T.w | T.nx)
        #expect(other.translate(0x5000, special: other.special(nxe: false)) == Self.pf(0b1001, 0x5000))
    }

    @Test func notPresentErrorCodes() throws {
        let tables = try T()
        try tables.map(0x1000, to: 0x1000)
        #expect(tables.translate(0x2000) == Self.pf(0, 0x2000))
        #expect(tables.translate(0x2000, .write) == Self.pf(0b10, 0x2000))
        #expect(tables.translate(0x2000, cpl: 3) == Self.pf(0b100, 0x2000))
        #expect(tables.translate(0x2000, .fetch) == Self.pf(0b1_0000, 0x2000))
        // Without NXE (and no SMEP) fetches do not report I/D.
        #expect(tables.translate(0x2000, .fetch, special: tables.special(nxe: false)) == Self.pf(0, 0x2000))
        // Not present at an upper level.
        #expect(tables.translate(0x8000_0000) == Self.pf(0, 0x8000_0000))
    }

    @Test func writeProtect() throws {
        let tables = try T()
        try tables.map(0x1000, to: 0x3000, flags: T.p | T.u)
        #expect(tables.translate(0x1000, .read) == .success(0x3000))
        #expect(tables.translate(0x1000, .write) == Self.pf(0b11, 0x1000))
        #expect(tables.translate(0x1000, .write, special: tables.special(wp: false)) == .success(0x3000))
        #expect(tables.translate(0x1000, .write, cpl: 3, special: tables.special(wp: false)) == Self.pf(0b111, 0x1000))
        // Read-only at an upper level (the PDPTE) wins over a writable leaf.
        try tables.map(0x4000_1000, to: 0x4000)
        try tables.update(0x4000_1000, level: 3) { $0 &= ~T.w }
        #expect(tables.translate(0x4000_1000, .write) == Self.pf(0b11, 0x4000_1000))
        #expect(tables.translate(0x4000_1000, .read) == .success(0x4000))
    }

    @Test func noExecute() throws {
        let tables = try T()
        try tables.map(0x1000, to: 0x3000, flags: T.p | T.w | T.nx)
        #expect(tables.translate(0x1000, .read) == .success(0x3000))
        #expect(tables.translate(0x1000, .fetch) == Self.pf(0b1_0001, 0x1000))
        // NX on the PML4E covers everything below it.
        try tables.map(0x80_0000_0000, to: 0x5000)
        try tables.update(0x80_0000_0000, level: 4) { $0 |= T.nx }
        #expect(tables.translate(0x80_0000_0000, .fetch, cpl: 3) == Self.pf(0b1_0101, 0x80_0000_0000))
        #expect(tables.translate(0x80_0000_0000, .read, cpl: 3) == .success(0x5000))
    }

    @Test func userSupervisor() throws {
        let tables = try T()
        try tables.map(0x1000, to: 0x3000)
        try tables.map(0x20_1000, to: 0x4000)
        try tables.update(0x20_1000, level: 2) { $0 &= ~T.u }   // supervisor-only at the PDE only
        #expect(tables.translate(0x1000, cpl: 3) == .success(0x3000))
        #expect(tables.translate(0x20_1000, cpl: 3) == Self.pf(0b101, 0x20_1000))
        #expect(tables.translate(0x20_1000, .write, cpl: 3) == Self.pf(0b111, 0x20_1000))
        #expect(tables.translate(0x20_1000, cpl: 0) == .success(0x4000))
        // Without an explicit CPL the access takes the vCPU's (CS.DPL in protected mode).
        var user = tables.special()
        user.cs.dpl = 3
        #expect(PageWalker.translate(0x20_1000, access: .read, special: user, memory: tables.memory)
            == Self.pf(0b101, 0x20_1000))
        #expect(PageWalker.translate(0x20_1000, access: .fetch, special: tables.special(), memory: tables.memory)
            == .success(0x4000))
        // SMEP: a supervisor fetch from a user page.
        #expect(tables.translate(0x1000, .fetch, special: tables.special(nxe: false, smep: true))
            == Self.pf(0b1_0001, 0x1000))
        #expect(tables.translate(0x20_1000, .fetch, special: tables.special(smep: true)) == .success(0x4000))
        // SMAP: a supervisor data access to a user page, unless RFLAGS.AC.
        let smap = tables.special(smap: true)
        #expect(tables.translate(0x1000, special: smap) == Self.pf(0b1, 0x1000))
        #expect(PageWalker.translate(0x1000, access: .init(.read, cpl: 0, alignmentCheck: true),
                                     special: smap, memory: tables.memory) == .success(0x3000))
    }

    @Test func tablesOutsideRAM() throws {
        let tables = try T()
        try tables.map(0x1000, to: 0x3000)
        // A leaf pointing outside RAM is returned as is: the caller's RAM check decides (MMIO).
        try tables.map(0x2000, to: 0xfee0_0000)
        #expect(tables.translate(0x2000) == .success(0xfee0_0000))
        // A PDE pointing at 1 GiB: the PTE read would be outside RAM.
        try tables.update(0x1000, level: 2) { $0 = 0x4000_0000 | T.p | T.w | T.u }
        #expect(tables.translate(0x1000) == .failure(.tableOutsideRAM(entryAddress: 0x4000_0008, level: 1)))
        // A PML4E pointing at 4 GiB: the PDPTE read would be outside RAM.
        try tables.update(0x1000, level: 4) { $0 = 0x1_0000_0000 | T.p | T.w | T.u }
        #expect(tables.translate(0x1000) == .failure(.tableOutsideRAM(entryAddress: 0x1_0000_0000, level: 3)))
        // CR3 itself outside RAM.
        var special = tables.special()
        special.cr3 = 0x4000_0000
        #expect(tables.translate(0x1000, special: special)
            == .failure(.tableOutsideRAM(entryAddress: 0x4000_0000, level: 4)))
        // An absurd CR3 (all address bits set) does not overflow into a host access.
        special.cr3 = .max
        #expect(tables.translate(0xffff_ffff_ffff_f000, special: special)
            == .failure(.tableOutsideRAM(entryAddress: 0x000f_ffff_ffff_fff8, level: 4)))
    }

    @Test func paeThirtyTwoBit() throws {
        let memory = try GuestMemory(layout: [(0, 0x20_0000)])
        var special = SpecialRegisters()
        special.cr0 = 0x8001_0001
        special.cr4 = 0x20
        special.efer = 0x800          // NXE, no LMA
        special.cr3 = 0x1000 | 0x18   // low bits below the 32-byte alignment are ignored
        try memory.write(UInt64(0x2000 | 1), at: 0x1000 + 2 * 8)                  // PDPTE[2]
        try memory.write(UInt64(0x2_0000_0000 | 0x87), at: 0x2000 + 5 * 8)       // 2 MiB user page above 4 GiB
        try memory.write(UInt64(0x3000 | 0x7), at: 0x2000 + 6 * 8)               // PDE → page table
        try memory.write(UInt64(0x7000 | 0x7) | (1 << 63), at: 0x3000 + 7 * 8)   // 4 KiB NX page
        func translate(_ linear: UInt64, _ kind: PageWalker.AccessKind = .read, cpl: UInt8 = 0)
            -> Result<UInt64, PageWalker.Failure> {
            PageWalker.translate(linear, access: .init(kind, cpl: cpl), special: special, memory: memory)
        }
        #expect(translate(0x80a1_2345) == .success(0x2_0001_2345))
        #expect(translate(0x80c0_7abc, cpl: 3) == .success(0x7abc))
        #expect(translate(0x80c0_7abc, .fetch) == Self.pf(0b1_0001, 0x80c0_7abc))
        #expect(translate(0x40c0_7abc) == Self.pf(0, 0x40c0_7abc))                 // PDPTE[1] not present
        #expect(translate(0x80e0_0000) == Self.pf(0, 0x80e0_0000))                 // PDE[7] not present
        // Upper 32 bits of the linear address are ignored outside long mode.
        #expect(translate(0xffff_ffff_80a1_2345) == .success(0x2_0001_2345))
    }

    @Test func nonPAEFourMegabytePages() throws {
        let memory = try GuestMemory(layout: [(0, 0x20_0000)])
        var special = SpecialRegisters()
        special.cr0 = 0x8001_0001
        special.cr4 = 0x10            // PSE
        special.cr3 = 0x1000
        // PDE[3]: 4 MiB page at 0x0c000000 with PSE-36 bits 39:32 = 5.
        try memory.write(UInt32(0x0c00_0000 | (5 << 13) | 0x87), at: 0x1000 + 3 * 4)
        // PDE[4] → page table at 0x2000; PTE[1] → 0x9000, supervisor read-only.
        try memory.write(UInt32(0x2000 | 0x7), at: 0x1000 + 4 * 4)
        try memory.write(UInt32(0x9000 | 0x1), at: 0x2000 + 1 * 4)
        // PDE[5]: 4 MiB page with the reserved bit 21 set.
        try memory.write(UInt32(0x0040_0000 | (1 << 21) | 0x83), at: 0x1000 + 5 * 4)
        func translate(_ linear: UInt64, _ kind: PageWalker.AccessKind = .read, cpl: UInt8 = 0,
                       special: SpecialRegisters) -> Result<UInt64, PageWalker.Failure> {
            PageWalker.translate(linear, access: .init(kind, cpl: cpl), special: special, memory: memory)
        }
        #expect(translate(0x00c1_2345, special: special) == .success(0x5_0c01_2345))
        #expect(translate(0x00c1_2345, .write, cpl: 3, special: special) == .success(0x5_0c01_2345))
        #expect(translate(0x0100_1234, special: special) == .success(0x9234))
        #expect(translate(0x0100_1234, .write, special: special) == Self.pf(0b11, 0x0100_1234))
        #expect(translate(0x0100_1234, cpl: 3, special: special) == Self.pf(0b101, 0x0100_1234))
        #expect(translate(0x0100_2000, special: special) == Self.pf(0, 0x0100_2000))
        #expect(translate(0x0140_0000, special: special) == Self.pf(0b1001, 0x0140_0000))
        // No NX in this format: fetches are allowed and never report I/D.
        #expect(translate(0x00c1_2345, .fetch, special: special) == .success(0x5_0c01_2345))
        // Without CR4.PSE the PS bit is ignored and the PDE points at a page table (here outside RAM).
        special.cr4 = 0
        #expect(translate(0x00c1_2345, special: special)
            == .failure(.tableOutsideRAM(entryAddress: 0x0c00_a000 + 0x12 * 4, level: 1)))
    }

    @Test func pagingOffIsIdentity() throws {
        let memory = try GuestMemory(layout: [(0, 0x1000)])
        var special = SpecialRegisters()
        special.cr0 = 0x11
        #expect(PageWalker.translate(0x1_2345_6789, access: .write, special: special, memory: memory)
            == .success(0x2345_6789))
    }
}

import KVM
import Memory

/// Vireo's boot GDT at `BootLayout.gdt`, and the KVM segment for each of its selectors.
///
/// Linux's 64-bit protocol wants __BOOT_CS = 0x10 and __BOOT_DS = 0x18; PVH wants a flat 32-bit
/// code segment, placed at 0x08. The TSS descriptor backs TR so the register state is self-consistent.
public enum BootGDT {
    public static let code32Selector: UInt16 = 0x08
    public static let code64Selector: UInt16 = 0x10
    public static let dataSelector: UInt16 = 0x18
    public static let tssSelector: UInt16 = 0x20

    /// Flat 4 GiB, 32-bit, execute/read, accessed (access 0x9B, G=1 D=1).
    public static let code32Descriptor = descriptor(base: 0, limit: 0xFFFFF, access: 0x9B, flags: 0xC)
    /// 64-bit, execute/read, accessed (access 0x9B, G=1 L=1).
    public static let code64Descriptor = descriptor(base: 0, limit: 0xFFFFF, access: 0x9B, flags: 0xA)
    /// Flat 4 GiB read/write data, accessed (access 0x93, G=1 D/B=1).
    public static let dataDescriptor = descriptor(base: 0, limit: 0xFFFFF, access: 0x93, flags: 0xC)
    /// Busy TSS (type 11), base 0, limit 0x67; 16 bytes in long mode, the upper half (base 63:32) is zero.
    public static let tssDescriptor = descriptor(base: 0, limit: 0x67, access: 0x8B, flags: 0)

    /// The table: null, code32, code64, data, TSS (low, high).
    public static let entries: [UInt64] = [0, code32Descriptor, code64Descriptor, dataDescriptor, tssDescriptor, 0]
    /// GDTR limit (size − 1).
    public static var limit: UInt16 { UInt16(entries.count * 8 - 1) }
    /// The GDTR value.
    public static var table: DescriptorTable { DescriptorTable(base: BootLayout.gdt, limit: limit) }

    /// Encodes a segment descriptor: 20-bit limit, access byte (P, DPL, S, type), flags nibble (G, D/B, L, AVL).
    public static func descriptor(base: UInt32, limit: UInt32, access: UInt8, flags: UInt8) -> UInt64 {
        let base = UInt64(base), limit = UInt64(limit & 0xFFFFF)
        return (limit & 0xFFFF) | (base & 0xFF_FFFF) << 16 | UInt64(access) << 40
            | (limit >> 16) << 48 | UInt64(flags & 0xF) << 52 | (base >> 24) << 56
    }

    /// The KVM segment a CPU would hold after loading `descriptor` with `selector` (limit in bytes).
    public static func segment(descriptor: UInt64, selector: UInt16) -> Segment {
        let access = UInt8(truncatingIfNeeded: descriptor >> 40)
        let flags = UInt8(truncatingIfNeeded: descriptor >> 52) & 0xF
        let rawLimit = UInt32(descriptor & 0xFFFF) | UInt32((descriptor >> 48) & 0xF) << 16
        let granular = flags & 0x8 != 0
        var segment = Segment(
            base: (descriptor >> 16) & 0xFF_FFFF | ((descriptor >> 56) & 0xFF) << 24,
            limit: granular ? rawLimit << 12 | 0xFFF : rawLimit,
            selector: selector,
            type: access & 0xF,
            present: access >> 7,
            dpl: (access >> 5) & 3,
            db: (flags >> 2) & 1,
            s: (access >> 4) & 1,
            l: (flags >> 1) & 1,
            g: granular ? 1 : 0)
        segment.avl = flags & 1
        return segment
    }

    /// The segment for one of this table's selectors.
    public static func segment(selector: UInt16) -> Segment {
        segment(descriptor: entries[Int(selector >> 3)], selector: selector)
    }

    /// The table as bytes.
    public static var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: entries.count * 8)
        for (i, entry) in entries.enumerated() { out.bootStore(entry, at: i * 8) }
        return out
    }

    /// Writes the table at `BootLayout.gdt`.
    public static func write(into memory: GuestMemory) throws(BootSetupError) {
        do { try memory.write(bytes, at: BootLayout.gdt) } catch { throw .memory(error) }
    }
}

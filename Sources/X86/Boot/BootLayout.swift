import Memory

/// Vireo's fixed guest-physical map of low memory used while booting an x86 guest.
///
/// Everything below 1 MiB except `guestFreeLow` belongs to Vireo's boot structures (or the
/// reserved EBDA/legacy window), so kernels may not be loaded over it.
public enum BootLayout {
    /// Boot GDT (null, 32-bit code 0x08, 64-bit code 0x10, data 0x18, TSS 0x20).
    public static let gdt: UInt64 = 0x500
    /// Xen `hvm_start_info` for PVH entry.
    public static let pvhStartInfo: UInt64 = 0x6000
    /// PVH memory map (`hvm_memmap_table_entry[]`), right after the start info.
    public static let pvhMemoryMap: UInt64 = 0x6040
    /// Room for this many PVH memory-map entries before `pvhModuleList`.
    public static let pvhMemoryMapMaxEntries = 64
    /// PVH module list (`hvm_modlist_entry[]`); the initrd is module 0.
    public static let pvhModuleList: UInt64 = 0x6800
    /// Room for this many PVH modules before the zero page.
    public static let pvhModuleListMaxEntries = 8
    /// Linux `struct boot_params` (the zero page).
    public static let zeroPage: UInt64 = 0x7000
    /// Initial RSP/RBP: the otherwise unused page below the page tables (kernels set their own).
    public static let bootStackTop: UInt64 = 0x8FF0
    /// Identity page tables: PML4.
    public static let pml4: UInt64 = 0x9000
    /// Identity page tables: the single PDPT.
    public static let pdpt: UInt64 = 0xA000
    /// Identity page tables: four page directories (0xB000–0xEFFF), one per GiB.
    public static let pageDirectories: UInt64 = 0xB000
    /// One past the last page-table byte.
    public static let pageTablesEnd: UInt64 = 0xF000
    /// Low memory Vireo never touches; a kernel may be loaded here.
    public static let guestFreeLow: Range<UInt64> = 0x1_0000..<0x2_0000
    /// Kernel command line (NUL-terminated).
    public static let commandLine: UInt64 = 0x2_0000
    /// Most command-line bytes including the terminating NUL.
    public static let commandLineMaxSize = 0x1_0000
    /// Start of the EBDA: MP floating pointer and table; e820-reserved from here to 1 MiB.
    public static let ebda: UInt64 = 0x9_FC00
    /// MP table may spill from the EBDA into the legacy VGA window (no VGA in Vireo); ROM area above is left alone.
    public static let mpTableEnd: UInt64 = 0xC_0000
    /// First byte above the legacy area: default bzImage load address, start of usable high RAM.
    public static let highMemory: UInt64 = 0x10_0000
    /// Initrds stay below the 32-bit MMIO hole.
    public static let initrdCeiling: UInt64 = X86MemoryLayout.mmioHoleStart
    /// Ranges below 1 MiB a kernel image may not overlap.
    public static let bootStructureRanges: [Range<UInt64>] = [0..<guestFreeLow.lowerBound, guestFreeLow.upperBound..<highMemory]
}

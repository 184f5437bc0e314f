import Memory

/// Xen's `hvm_start_info` (version 1) with its module list and memory map, for PVH entry (EBX points at it).
public struct PVHStartInfo: Equatable, Sendable {
    /// Field offsets in `struct hvm_start_info`.
    public enum Offset {
        public static let magic = 0x00
        public static let version = 0x04
        public static let flags = 0x08
        public static let nrModules = 0x0C
        public static let modlistPaddr = 0x10
        public static let cmdlinePaddr = 0x18
        public static let rsdpPaddr = 0x20
        public static let memmapPaddr = 0x28
        public static let memmapEntries = 0x30
        public static let reserved = 0x34
    }

    public static let magic: UInt32 = 0x336E_C578
    public static let version: UInt32 = 1
    public static let size = 0x38
    /// `hvm_modlist_entry`: paddr, size, cmdline_paddr, reserved (all u64).
    public static let moduleEntrySize = 32
    /// `hvm_memmap_table_entry`: addr u64, size u64, type u32, reserved u32.
    public static let memoryMapEntrySize = 24

    /// Bytes for `BootLayout.pvhStartInfo`.
    public private(set) var startInfo: [UInt8]
    /// Bytes for `BootLayout.pvhModuleList` (empty without an initrd).
    public private(set) var moduleList: [UInt8]
    /// Bytes for `BootLayout.pvhMemoryMap`.
    public private(set) var memoryMap: [UInt8]

    /// Builds the start info; the initrd, if any, is module 0 with no command line.
    public init(commandLine: BootCommandLine?, initrd: Initrd?, memoryMap entries: [E820Entry]) throws(BootSetupError) {
        guard entries.count <= BootLayout.pvhMemoryMapMaxEntries else {
            throw .tooManyMemoryMapEntries(count: entries.count, limit: BootLayout.pvhMemoryMapMaxEntries)
        }
        var info = [UInt8](repeating: 0, count: PVHStartInfo.size)
        info.bootStore(PVHStartInfo.magic, at: Offset.magic)
        info.bootStore(PVHStartInfo.version, at: Offset.version)
        info.bootStore(UInt32(0), at: Offset.flags)
        info.bootStore(commandLine?.address ?? 0, at: Offset.cmdlinePaddr)
        // No ACPI: a zero RSDP address tells the guest to look for none (Linux then uses the MP table).
        info.bootStore(UInt64(0), at: Offset.rsdpPaddr)
        var modules: [UInt8] = []
        if let initrd {
            modules = [UInt8](repeating: 0, count: PVHStartInfo.moduleEntrySize)
            modules.bootStore(initrd.address, at: 0)
            modules.bootStore(initrd.size, at: 8)
            info.bootStore(UInt32(1), at: Offset.nrModules)
            info.bootStore(BootLayout.pvhModuleList, at: Offset.modlistPaddr)
        }
        var map = [UInt8](repeating: 0, count: entries.count * PVHStartInfo.memoryMapEntrySize)
        for (i, entry) in entries.enumerated() {
            let base = i * PVHStartInfo.memoryMapEntrySize
            map.bootStore(entry.address, at: base)
            map.bootStore(entry.size, at: base + 8)
            map.bootStore(entry.kind.rawValue, at: base + 16)
        }
        info.bootStore(BootLayout.pvhMemoryMap, at: Offset.memmapPaddr)
        info.bootStore(UInt32(entries.count), at: Offset.memmapEntries)
        startInfo = info
        moduleList = modules
        memoryMap = map
    }

    /// Writes the start info, module list and memory map at their `BootLayout` addresses.
    public func write(into memory: GuestMemory) throws(BootSetupError) {
        do {
            try memory.write(startInfo, at: BootLayout.pvhStartInfo)
            try memory.write(memoryMap, at: BootLayout.pvhMemoryMap)
            try memory.write(moduleList, at: BootLayout.pvhModuleList)
        } catch {
            throw .memory(error)
        }
    }
}

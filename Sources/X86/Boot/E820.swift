import Memory

/// One BIOS e820 memory-map entry (also the layout PVH's memory map follows).
public struct E820Entry: Equatable, Sendable {
    /// e820 / XEN_HVM_MEMMAP_TYPE_* values.
    public enum Kind: UInt32, Equatable, Sendable {
        case ram = 1, reserved = 2, acpi = 3, nvs = 4, unusable = 5
    }

    public var address: UInt64
    public var size: UInt64
    public var kind: Kind

    public init(address: UInt64, size: UInt64, kind: Kind) {
        self.address = address; self.size = size; self.kind = kind
    }

    public var end: UInt64 { address + size }
}

/// Builds the memory map Vireo reports: low RAM up to the EBDA, the EBDA/legacy area reserved, RAM from 1 MiB.
public enum E820Map {
    /// The map for RAM regions as `X86MemoryLayout.regions` describes them (one must start at 0 and pass 1 MiB).
    public static func entries(ramRegions: [(base: UInt64, size: UInt64)]) throws(BootSetupError) -> [E820Entry] {
        let sorted = ramRegions.filter { $0.size > 0 }.sorted { $0.base < $1.base }
        guard let low = sorted.first, low.base == 0 else { throw .noLowRAM }
        guard low.size > BootLayout.highMemory else { throw .lowRAMTooSmall(end: low.size) }
        var entries = [
            E820Entry(address: 0, size: BootLayout.ebda, kind: .ram),
            E820Entry(address: BootLayout.ebda, size: BootLayout.highMemory - BootLayout.ebda, kind: .reserved),
            E820Entry(address: BootLayout.highMemory, size: low.size - BootLayout.highMemory, kind: .ram),
        ]
        for region in sorted.dropFirst() {
            entries.append(E820Entry(address: region.base, size: region.size, kind: .ram))
        }
        return entries
    }

    /// The map for a guest's RAM.
    public static func entries(for memory: GuestMemory) throws(BootSetupError) -> [E820Entry] {
        try entries(ramRegions: memory.regions.map { ($0.guestBase, $0.size) })
    }
}

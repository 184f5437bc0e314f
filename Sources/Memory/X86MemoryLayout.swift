/// The guest-physical map of an x86 Vireo machine: RAM below the 32-bit MMIO hole, the rest above 4 GiB.
public enum X86MemoryLayout {
    /// Start of the MMIO hole below 4 GiB (virtio-mmio, IOAPIC, LAPIC live here).
    public static let mmioHoleStart: UInt64 = 0xC000_0000
    /// First guest-physical address above the hole.
    public static let highMemoryStart: UInt64 = 0x1_0000_0000
    /// Base of the virtio-mmio device window inside the hole.
    public static let virtioMMIOBase: UInt64 = 0xD000_0000
    /// Size of each virtio-mmio device's register window.
    public static let virtioMMIOStride: UInt64 = 0x1000
    /// Smallest and largest RAM sizes Vireo accepts.
    public static let minimumRAM: UInt64 = 16 << 20
    public static let maximumRAM: UInt64 = 1 << 40

    /// RAM regions for `ramSize` bytes: [0, min(ramSize, hole)) and, if needed, [4 GiB, …).
    public static func regions(ramSize: UInt64) -> [(base: UInt64, size: UInt64)] {
        let low = min(ramSize, mmioHoleStart)
        var result: [(base: UInt64, size: UInt64)] = [(0, low)]
        if ramSize > low { result.append((highMemoryStart, ramSize - low)) }
        return result
    }
}

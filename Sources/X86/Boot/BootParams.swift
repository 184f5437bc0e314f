import Memory

/// The Linux zero page (`struct boot_params`, zero-page.rst) for the 64-bit boot protocol.
public struct BootParams: Equatable, Sendable {
    /// Field offsets outside the setup header (header fields are in `SetupHeader.Offset`).
    public enum Offset {
        public static let extRamdiskImage = 0x0C0
        public static let extRamdiskSize = 0x0C4
        public static let extCmdLinePtr = 0x0C8
        public static let e820Entries = 0x1E8
        public static let setupHeader = 0x1F1
        public static let e820Table = 0x2D0
    }

    public static let size = 4096
    public static let e820EntrySize = 20
    public static let maxE820Entries = 128
    /// heap_end_ptr: end of the real-mode heap relative to the setup start, the customary 0xFE00.
    public static let heapEndPtr: UInt16 = 0xFE00

    /// The 4096 bytes to place at `BootLayout.zeroPage`.
    public private(set) var bytes: [UInt8]

    /// Builds a zero page from a bzImage's header, or a synthesized one when `setupHeader` is nil (vmlinux).
    public init(setupHeader: SetupHeader?, commandLine: BootCommandLine, initrd: Initrd?,
                memoryMap: [E820Entry]) throws(BootSetupError) {
        typealias H = SetupHeader.Offset
        guard memoryMap.count <= BootParams.maxE820Entries else {
            throw .tooManyMemoryMapEntries(count: memoryMap.count, limit: BootParams.maxE820Entries)
        }
        var page = [UInt8](repeating: 0, count: BootParams.size)
        if let setupHeader {
            // Start from the kernel's own header so fields we do not touch keep the kernel's values.
            for (i, byte) in setupHeader.raw.prefix(SetupHeader.areaEnd - SetupHeader.start).enumerated() {
                page[SetupHeader.start + i] = byte
            }
            page[H.loadflags] |= SetupHeader.canUseHeap
        } else {
            page.bootStore(SetupHeader.bootFlagValue, at: H.bootFlag)
            page.bootStore(SetupHeader.headerMagic, at: H.header)
            page.bootStore(SetupHeader.synthesizedVersion, at: H.version)
            page[H.loadflags] = SetupHeader.loadedHigh | SetupHeader.canUseHeap
            page.bootStore(UInt32(commandLine.length), at: H.cmdlineSize)
        }
        page[H.typeOfLoader] = SetupHeader.loaderTypeOther
        page.bootStore(BootParams.heapEndPtr, at: H.heapEndPtr)
        page.bootStore(UInt32(truncatingIfNeeded: commandLine.address), at: H.cmdLinePtr)
        page.bootStore(UInt32(truncatingIfNeeded: commandLine.address >> 32), at: Offset.extCmdLinePtr)
        if let initrd {
            page.bootStore(UInt32(truncatingIfNeeded: initrd.address), at: H.ramdiskImage)
            page.bootStore(UInt32(truncatingIfNeeded: initrd.size), at: H.ramdiskSize)
            page.bootStore(UInt32(truncatingIfNeeded: initrd.address >> 32), at: Offset.extRamdiskImage)
            page.bootStore(UInt32(truncatingIfNeeded: initrd.size >> 32), at: Offset.extRamdiskSize)
        } else {
            page.bootStore(UInt32(0), at: H.ramdiskImage)
            page.bootStore(UInt32(0), at: H.ramdiskSize)
        }
        page[Offset.e820Entries] = UInt8(memoryMap.count)
        for (i, entry) in memoryMap.enumerated() {
            let base = Offset.e820Table + i * BootParams.e820EntrySize
            page.bootStore(entry.address, at: base)
            page.bootStore(entry.size, at: base + 8)
            page.bootStore(entry.kind.rawValue, at: base + 16)
        }
        bytes = page
    }

    /// Writes the page at `BootLayout.zeroPage`.
    public func write(into memory: GuestMemory) throws(BootSetupError) {
        do { try memory.write(bytes, at: BootLayout.zeroPage) } catch { throw .memory(error) }
    }
}

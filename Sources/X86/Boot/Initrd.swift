import Memory

/// Where the initrd sits in guest memory.
public struct Initrd: Equatable, Sendable {
    public let address: UInt64
    public let size: UInt64

    public init(address: UInt64, size: UInt64) { self.address = address; self.size = size }

    /// Page-aligned address as high as possible below min(low RAM end, 0xC000_0000, addressMax + 1),
    /// above 1 MiB and clear of `kernel` (below it if it cannot go above).
    public static func place(size: UInt64, kernel: Range<UInt64>, addressMax: UInt64?,
                             in memory: GuestMemory) throws(BootSetupError) -> Initrd {
        guard size > 0 else { throw .emptyInitrd }
        guard let low = memory.regions.first(where: { $0.guestBase == 0 }) else { throw .noLowRAM }
        var ceiling = min(low.size, BootLayout.initrdCeiling)
        if let addressMax { ceiling = min(ceiling, addressMax == .max ? .max : addressMax + 1) }
        let failure = BootSetupError.initrdDoesNotFit(size: size, ceiling: ceiling, kernel: kernel)
        var candidates: [UInt64] = []
        if size <= ceiling { candidates.append(alignDown(ceiling - size, 4096)) }
        let belowKernel = min(kernel.lowerBound, ceiling)
        if size <= belowKernel { candidates.append(alignDown(belowKernel - size, 4096)) }
        for address in candidates where address >= BootLayout.highMemory && address + size <= ceiling
            && !overlaps(address..<(address + size), kernel) {
            return Initrd(address: address, size: size)
        }
        throw failure
    }

    /// Places and copies `image` for `kernel`.
    public static func load(_ image: UnsafeRawBufferPointer, for kernel: LoadedKernel,
                            into memory: GuestMemory) throws(BootSetupError) -> Initrd {
        let initrd = try place(size: UInt64(image.count), kernel: kernel.range,
                               addressMax: kernel.initrdAddressMax, in: memory)
        do { try memory.write(image, at: initrd.address) } catch { throw .memory(error) }
        return initrd
    }

    /// Places it and reads it from `source` straight into guest RAM.
    public static func load(from source: some KernelSource, for kernel: LoadedKernel,
                            into memory: GuestMemory) throws(BootSetupError) -> Initrd {
        let initrd = try place(size: UInt64(source.size), kernel: kernel.range,
                               addressMax: kernel.initrdAddressMax, in: memory)
        do {
            try source.copy(at: 0, count: source.size, to: initrd.address, in: memory)
        } catch {
            switch error {
            case let .memory(error): throw .memory(error)
            case let .read(error): throw .unreadableInitrd(error)
            }
        }
        return initrd
    }

    /// Places and copies an array.
    public static func load(_ image: [UInt8], for kernel: LoadedKernel, into memory: GuestMemory) throws(BootSetupError) -> Initrd {
        try withBootBytes(image) { (raw) throws(BootSetupError) in try load(raw, for: kernel, into: memory) }
    }
}

import Memory

/// A parsed Linux bzImage: its setup header and where the protected-mode kernel lies in the file.
public struct BzImage: Equatable, Sendable {
    public let header: SetupHeader
    /// Bytes of real-mode setup before the protected-mode kernel: (setup_sects + 1) × 512.
    public let setupSize: Int
    /// Bytes of protected-mode kernel (everything after the setup).
    public let kernelSize: Int
    /// Size of the parsed file, rechecked at load time.
    public let fileSize: Int

    public init(parsing image: [UInt8]) throws(BzImageError) {
        self = try withBootBytes(image) { (raw) throws(BzImageError) in try BzImage(parsing: raw) }
    }

    public init(parsing image: UnsafeRawBufferPointer) throws(BzImageError) {
        typealias O = SetupHeader.Offset
        let bytes = BootBytes(image)
        guard bytes.count >= 512 else {
            throw .truncated("\(bytes.count) bytes is shorter than the 512-byte boot sector")
        }
        let bootFlag = bytes.u16(O.bootFlag)
        guard bootFlag == SetupHeader.bootFlagValue else { throw .badBootFlag(bootFlag) }
        guard bytes.count >= O.version + 2 else {
            throw .truncated("the setup header at 0x1f1 is cut off at \(bytes.count) bytes")
        }
        let magic = bytes.u32(O.header)
        guard magic == SetupHeader.headerMagic else { throw .badHeaderMagic(magic) }
        let version = bytes.u16(O.version)
        guard version >= SetupHeader.minimumVersion else { throw .protocolTooOld(version: version) }
        // The short jump at 0x200 skips the header, so its target marks where the header ends.
        let declaredEnd = O.header + Int(bytes.u8(O.jump + 1))
        guard declaredEnd >= SetupHeader.minimumEnd else {
            throw .headerTooShort(length: declaredEnd - SetupHeader.start, needed: SetupHeader.minimumEnd - SetupHeader.start)
        }
        let headerEnd = min(declaredEnd, SetupHeader.areaEnd)
        guard bytes.count >= headerEnd else {
            throw .truncated("the setup header ends at \(hex(headerEnd)) but the file has \(bytes.count) bytes")
        }
        let header = SetupHeader(bytes: bytes, end: headerEnd)
        // setup_sects == 0 means 4 for compatibility with ancient images.
        let setupSectors = header.setupSects == 0 ? 4 : Int(header.setupSects)
        let setupSize = (setupSectors + 1) * 512
        guard bytes.count > setupSize else {
            throw .truncated("setup header says \(setupSectors) setup sectors but the file has \(bytes.count) bytes")
        }
        let kernelSize = bytes.count - setupSize
        // syssize counts 16-byte paragraphs, rounded up: allow a partial last paragraph.
        let declaredKernel = UInt64(header.syssize) * 16
        guard declaredKernel <= UInt64(kernelSize) + 15 else {
            throw .truncated("setup header says the protected-mode kernel is \(declaredKernel) bytes but only \(kernelSize) follow the \(setupSectors) setup sectors")
        }
        guard header.loadflags & SetupHeader.loadedHigh != 0 else { throw .notLoadedHigh }
        guard header.xloadflags & SetupHeader.xlfKernel64 != 0 else { throw .no64BitEntry }
        if header.relocatable {
            let alignment = header.kernelAlignment
            guard alignment >= 0x1000, alignment & (alignment - 1) == 0 else { throw .badKernelAlignment(alignment) }
        } else {
            guard header.prefAddress >= BootLayout.highMemory else { throw .badPreferredAddress(header.prefAddress) }
        }
        guard header.initSize > 0 else { throw .zeroInitSize }

        self.header = header
        self.setupSize = setupSize
        self.kernelSize = kernelSize
        self.fileSize = bytes.count
    }

    /// 64-bit entry for a kernel loaded at `loadAddress`.
    public func entry64(loadAddress: UInt64) -> UInt64 { loadAddress + SetupHeader.entry64Offset }

    /// Where the kernel runs once it has moved itself (boot.rst init_size): the load address rounded
    /// up to kernel_alignment but never below pref_address (LOAD_PHYSICAL_ADDR), or pref_address if not relocatable.
    public func runtimeStart(loadAddress: UInt64) -> UInt64 {
        guard header.relocatable else { return header.prefAddress }
        let aligned = alignUp(loadAddress, UInt64(header.kernelAlignment)) ?? loadAddress
        return header.prefAddress >= BootLayout.highMemory ? max(aligned, header.prefAddress) : aligned
    }

    /// pref_address when relocatable, suitably aligned and the whole runtime area fits in RAM; else 1 MiB.
    public func loadAddress(in memory: GuestMemory) -> UInt64 {
        let preferred = header.prefAddress
        if header.relocatable, preferred > BootLayout.highMemory, preferred % UInt64(header.kernelAlignment) == 0,
           KernelPlacement.problem(address: preferred, size: max(UInt64(kernelSize), UInt64(header.initSize)), memory: memory) == nil {
            return preferred
        }
        return BootLayout.highMemory
    }
}

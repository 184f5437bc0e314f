import Memory

/// A parsed ELF kernel (x86-64 ELF64, or i386 ELF32 for PVH-only guests): entry points and load segments.
public struct ELFKernel: Equatable, Sendable {
    /// One PT_LOAD segment: file bytes copied to `physicalAddress`, the rest up to `memorySize` zeroed.
    public struct LoadSegment: Equatable, Sendable {
        public var index: Int
        public var fileOffset: UInt64
        public var fileSize: UInt64
        public var physicalAddress: UInt64
        public var memorySize: UInt64
        public var physicalRange: Range<UInt64> { physicalAddress..<(physicalAddress + memorySize) }
    }

    /// ELF magic "\x7fELF".
    public static let magic: [UInt8] = [0x7F, 0x45, 0x4C, 0x46]
    public static let machineX86_64: UInt16 = 62
    public static let machineI386: UInt16 = 3

    /// True for ELF64 x86-64, false for ELF32 i386.
    public let is64Bit: Bool
    /// e_entry; for a Linux vmlinux this is the physical address of startup_64.
    public let entry: UInt64
    /// The XEN_ELFNOTE_PHYS32_ENTRY note's value, if the kernel supports PVH boot.
    public let pvhEntry: UInt32?
    /// True when the image carries a "Linux" ELF note (a vmlinux).
    public let isLinux: Bool
    /// Loadable segments with a non-zero memory size, sorted by physical address.
    public let segments: [LoadSegment]
    /// Size of the parsed file, rechecked at load time.
    public let fileSize: Int

    /// Lowest guest-physical address any segment occupies.
    public var lowestAddress: UInt64 { segments.first?.physicalAddress ?? 0 }
    /// One past the highest guest-physical address any segment occupies.
    public var endAddress: UInt64 { segments.map(\.physicalRange.upperBound).max() ?? 0 }

    static let ptLoad: UInt32 = 1
    static let ptNote: UInt32 = 4
    static let etExec: UInt16 = 2
    /// PN_XNUM: the real phdr count lives in section 0; no kernel needs that, so it is refused.
    static let pnXNum: UInt16 = 0xFFFF

    public init(parsing image: [UInt8]) throws(ELFError) {
        self = try withBootBytes(image) { (raw) throws(ELFError) in try ELFKernel(parsing: raw) }
    }

    public init(parsing image: UnsafeRawBufferPointer) throws(ELFError) {
        try self.init(reading: BootBytes(image))
    }

    /// Parses the file behind `source`, reading only the pages that hold its headers and notes.
    public init(parsing source: some KernelSource) throws(ELFError) {
        let paged = PagedImage(source)
        do {
            try self.init(reading: paged)
        } catch {
            // What zeros from a failed read made the parser say is not the problem; the read is.
            if let failure = paged.failure { throw .unreadable(failure) }
            throw error
        }
        if let failure = paged.failure { throw .unreadable(failure) }
    }

    init(reading bytes: some ImageReading) throws(ELFError) {
        guard bytes.count >= 16 else {
            if bytes.count >= 4, bytes.prefix(4) != ELFKernel.magic { throw .notELF(prefix: bytes.prefix(16)) }
            throw .truncated(what: "the ELF identification", needed: 16, fileSize: bytes.count)
        }
        guard bytes.prefix(4) == ELFKernel.magic else { throw .notELF(prefix: bytes.prefix(16)) }
        let elfClass = bytes.u8(4)
        guard elfClass == 1 || elfClass == 2 else { throw .unsupportedClass(elfClass) }
        guard bytes.u8(5) == 1 else { throw .unsupportedByteOrder(bytes.u8(5)) }
        guard bytes.u8(6) == 1 else { throw .unsupportedVersion(UInt32(bytes.u8(6))) }
        let is64 = elfClass == 2
        let headerSize = is64 ? 64 : 52
        guard bytes.count >= headerSize else {
            throw .truncated(what: "the ELF header", needed: UInt64(headerSize), fileSize: bytes.count)
        }
        let type = bytes.u16(16)
        guard type == ELFKernel.etExec else { throw .notExecutable(type: type) }
        let machine = bytes.u16(18)
        guard machine == (is64 ? ELFKernel.machineX86_64 : ELFKernel.machineI386) else {
            throw .wrongMachine(machine: machine, is64Bit: is64)
        }
        let version = bytes.u32(20)
        guard version == 1 else { throw .unsupportedVersion(version) }

        let header = ELFHeader(bytes: bytes, is64: is64)
        let table = try ELFKernel.programHeaders(header, bytes: bytes)
        var segments: [LoadSegment] = []
        var noteRegions: [ELFNoteRegion] = []
        for (index, phdr) in table.enumerated() {
            guard phdr.type == ELFKernel.ptLoad || phdr.type == ELFKernel.ptNote else { continue }
            guard bytes.has(phdr.offset, phdr.fileSize) else {
                throw .segmentOutsideFile(index: index, offset: phdr.offset, size: phdr.fileSize, fileSize: bytes.count)
            }
            if phdr.type == ELFKernel.ptNote {
                noteRegions.append(ELFNoteRegion(offset: Int(phdr.offset), size: Int(phdr.fileSize), alignment: phdr.alignment))
                continue
            }
            guard phdr.fileSize <= phdr.memorySize else {
                throw .segmentFileSizeExceedsMemorySize(index: index, fileSize: phdr.fileSize, memorySize: phdr.memorySize)
            }
            guard phdr.memorySize > 0 else { continue }
            // ELF32 addresses are 32-bit: a segment may end exactly at 4 GiB but not past it.
            let (end, overflow) = phdr.physicalAddress.addingReportingOverflow(phdr.memorySize)
            guard !overflow, is64 || end <= 1 << 32 else {
                throw .segmentAddressOverflow(index: index, address: phdr.physicalAddress, size: phdr.memorySize)
            }
            segments.append(LoadSegment(index: index, fileOffset: phdr.offset, fileSize: phdr.fileSize,
                                        physicalAddress: phdr.physicalAddress, memorySize: phdr.memorySize))
        }
        guard !segments.isEmpty else { throw .noLoadableSegments }
        segments.sort { $0.physicalAddress < $1.physicalAddress }
        for (previous, next) in zip(segments, segments.dropFirst())
        where previous.physicalRange.upperBound > next.physicalAddress {
            throw .segmentsOverlap(first: min(previous.index, next.index), second: max(previous.index, next.index))
        }
        // PT_NOTE is what loaders are meant to use; sections are a fallback for images without one.
        if noteRegions.isEmpty {
            noteRegions = try ELFKernel.noteSections(header, bytes: bytes)
        }
        let notes = try ELFNotes.scan(noteRegions, in: bytes)

        self.is64Bit = is64
        self.entry = header.entry
        self.pvhEntry = notes.pvhEntry
        self.isLinux = notes.isLinux
        self.segments = segments
        self.fileSize = bytes.count
    }
}

/// The ELF header fields the loader uses, class-independent.
struct ELFHeader {
    var is64: Bool
    var entry: UInt64
    var phoff: UInt64
    var shoff: UInt64
    var phentsize: UInt16
    var phnum: UInt16
    var shentsize: UInt16
    var shnum: UInt16

    init(bytes: some ImageReading, is64: Bool) {
        self.is64 = is64
        if is64 {
            entry = bytes.u64(24); phoff = bytes.u64(32); shoff = bytes.u64(40)
            phentsize = bytes.u16(54); phnum = bytes.u16(56); shentsize = bytes.u16(58); shnum = bytes.u16(60)
        } else {
            entry = UInt64(bytes.u32(24)); phoff = UInt64(bytes.u32(28)); shoff = UInt64(bytes.u32(32))
            phentsize = bytes.u16(42); phnum = bytes.u16(44); shentsize = bytes.u16(46); shnum = bytes.u16(48)
        }
    }
}

/// One program header, class-independent.
struct ELFProgramHeader {
    var type: UInt32
    var offset: UInt64
    var physicalAddress: UInt64
    var fileSize: UInt64
    var memorySize: UInt64
    var alignment: UInt64
}

/// A byte range of the file holding ELF notes.
struct ELFNoteRegion {
    var offset: Int
    var size: Int
    var alignment: UInt64
}

extension ELFKernel {
    static func programHeaders(_ header: ELFHeader, bytes: some ImageReading) throws(ELFError) -> [ELFProgramHeader] {
        let entrySize: UInt16 = header.is64 ? 56 : 32
        guard header.phnum > 0 else { throw .badProgramHeaderTable("it has no entries") }
        guard header.phnum != pnXNum else { throw .badProgramHeaderTable("extended numbering (PN_XNUM) is not supported") }
        guard header.phentsize == entrySize else {
            throw .badProgramHeaderTable("entry size is \(header.phentsize), expected \(entrySize)")
        }
        let tableSize = UInt64(header.phnum) * UInt64(entrySize)
        guard bytes.has(header.phoff, tableSize) else {
            throw .truncated(what: "the program header table at \(hex(header.phoff)) (\(header.phnum) entries)",
                             needed: header.phoff &+ tableSize, fileSize: bytes.count)
        }
        return (0..<Int(header.phnum)).map { i in
            let base = Int(header.phoff) + i * Int(entrySize)
            if header.is64 {
                return ELFProgramHeader(type: bytes.u32(base), offset: bytes.u64(base + 8),
                                        physicalAddress: bytes.u64(base + 24), fileSize: bytes.u64(base + 32),
                                        memorySize: bytes.u64(base + 40), alignment: bytes.u64(base + 48))
            }
            return ELFProgramHeader(type: bytes.u32(base), offset: UInt64(bytes.u32(base + 4)),
                                    physicalAddress: UInt64(bytes.u32(base + 12)), fileSize: UInt64(bytes.u32(base + 16)),
                                    memorySize: UInt64(bytes.u32(base + 20)), alignment: UInt64(bytes.u32(base + 28)))
        }
    }

    /// SHT_NOTE sections, used only when there is no PT_NOTE segment.
    static func noteSections(_ header: ELFHeader, bytes: some ImageReading) throws(ELFError) -> [ELFNoteRegion] {
        guard header.shoff != 0, header.shnum != 0 else { return [] }
        let entrySize: UInt16 = header.is64 ? 64 : 40
        guard header.shentsize == entrySize else {
            throw .badSectionHeaderTable("entry size is \(header.shentsize), expected \(entrySize)")
        }
        let tableSize = UInt64(header.shnum) * UInt64(entrySize)
        guard bytes.has(header.shoff, tableSize) else {
            throw .truncated(what: "the section header table at \(hex(header.shoff)) (\(header.shnum) entries)",
                             needed: header.shoff &+ tableSize, fileSize: bytes.count)
        }
        let shtNote: UInt32 = 7
        var regions: [ELFNoteRegion] = []
        for i in 0..<Int(header.shnum) {
            let base = Int(header.shoff) + i * Int(entrySize)
            guard bytes.u32(base + 4) == shtNote else { continue }
            let offset = header.is64 ? bytes.u64(base + 24) : UInt64(bytes.u32(base + 16))
            let size = header.is64 ? bytes.u64(base + 32) : UInt64(bytes.u32(base + 20))
            let alignment = header.is64 ? bytes.u64(base + 48) : UInt64(bytes.u32(base + 32))
            guard bytes.has(offset, size) else {
                throw .badSectionHeaderTable("note section \(i) [\(hex(offset)), +\(hex(size))) is outside the \(bytes.count)-byte file")
            }
            regions.append(ELFNoteRegion(offset: Int(offset), size: Int(size), alignment: alignment))
        }
        return regions
    }
}

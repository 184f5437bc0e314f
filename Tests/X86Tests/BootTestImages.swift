import Memory
@testable import X86

/// Deterministic PRNG (SplitMix64) so fuzz failures reproduce from the seed.
struct BootRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Little-endian byte-building helpers for synthesized images.
extension Array where Element == UInt8 {
    mutating func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        if count < offset + MemoryLayout<T>.size { append(contentsOf: repeatElement(0, count: offset + MemoryLayout<T>.size - count)) }
        for i in 0..<MemoryLayout<T>.size { self[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }

    func get<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var value: T = 0
        for i in 0..<MemoryLayout<T>.size { value |= T(self[offset + i]) << (8 * i) }
        return value
    }
}

/// A note to embed in a synthesized ELF.
struct BootTestNote {
    var name: String
    var type: UInt32
    var desc: [UInt8]

    static func pvh(_ entry: UInt32) -> BootTestNote { BootTestNote(name: "Xen", type: 18, desc: bytes(UInt64(entry))) }
    static func pvh32(_ entry: UInt32) -> BootTestNote { BootTestNote(name: "Xen", type: 18, desc: bytes(entry)) }
    static let linux = BootTestNote(name: "Linux", type: 6, desc: [0, 0, 0, 0])
    static let gnuBuildID = BootTestNote(name: "GNU", type: 3, desc: Array(repeating: 0xAB, count: 20))

    static func bytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        (0..<MemoryLayout<T>.size).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
    }

    /// Encoded with 4-byte padding, as a PT_NOTE segment holds it.
    var encoded: [UInt8] {
        var out: [UInt8] = []
        let nameBytes = Array(name.utf8) + [0]
        out.put(UInt32(nameBytes.count), at: 0)
        out.put(UInt32(desc.count), at: 4)
        out.put(type, at: 8)
        out += nameBytes
        while out.count % 4 != 0 { out.append(0) }
        out += desc
        while out.count % 4 != 0 { out.append(0) }
        return out
    }
}

/// One loadable segment of a synthesized ELF.
struct BootTestSegment {
    var paddr: UInt64
    var data: [UInt8]
    var memsz: UInt64
}

/// Builds small but well-formed ELF executables.
enum BootTestELF {
    struct Built {
        var image: [UInt8]
        /// File offset of each program header.
        var phdrOffsets: [Int]
    }

    static func build(is64: Bool = true, entry: UInt64 = 0x100000,
                      segments: [BootTestSegment] = [BootTestSegment(paddr: 0x100000, data: Array(0..<200).map { UInt8($0 & 0xFF) }, memsz: 0x1000)],
                      notes: [BootTestNote]? = [.linux, .pvh(0x100040)],
                      sectionNotes: Bool = false) -> Built {
        let ehsize = is64 ? 64 : 52, phentsize = is64 ? 56 : 32
        let noteBlob = (notes ?? []).flatMap(\.encoded)
        let usePTNote = notes != nil && !sectionNotes
        let phnum = segments.count + (usePTNote ? 1 : 0)
        var image = [UInt8](repeating: 0, count: ehsize + phnum * phentsize)
        var dataOffsets: [Int] = []
        for segment in segments {
            while image.count % 16 != 0 { image.append(0) }
            dataOffsets.append(image.count)
            image += segment.data
        }
        while image.count % 8 != 0 { image.append(0) }
        let noteOffset = image.count
        image += noteBlob
        var shoff = 0
        if sectionNotes {
            // Null section plus one SHT_NOTE section.
            while image.count % 8 != 0 { image.append(0) }
            shoff = image.count
            let shentsize = is64 ? 64 : 40
            image += [UInt8](repeating: 0, count: 2 * shentsize)
            let s = shoff + shentsize
            image.put(UInt32(7), at: s + 4)
            if is64 {
                image.put(UInt64(noteOffset), at: s + 24); image.put(UInt64(noteBlob.count), at: s + 32); image.put(UInt64(4), at: s + 48)
            } else {
                image.put(UInt32(noteOffset), at: s + 16); image.put(UInt32(noteBlob.count), at: s + 20); image.put(UInt32(4), at: s + 32)
            }
        }
        // ELF header.
        image[0] = 0x7F; image[1] = 0x45; image[2] = 0x4C; image[3] = 0x46
        image[4] = is64 ? 2 : 1; image[5] = 1; image[6] = 1
        image.put(UInt16(2), at: 16)
        image.put(UInt16(is64 ? 62 : 3), at: 18)
        image.put(UInt32(1), at: 20)
        if is64 {
            image.put(entry, at: 24); image.put(UInt64(ehsize), at: 32); image.put(UInt64(shoff), at: 40)
            image.put(UInt16(ehsize), at: 52); image.put(UInt16(phentsize), at: 54); image.put(UInt16(phnum), at: 56)
            image.put(UInt16(sectionNotes ? 64 : 0), at: 58); image.put(UInt16(sectionNotes ? 2 : 0), at: 60)
        } else {
            image.put(UInt32(entry), at: 24); image.put(UInt32(ehsize), at: 28); image.put(UInt32(shoff), at: 32)
            image.put(UInt16(ehsize), at: 40); image.put(UInt16(phentsize), at: 42); image.put(UInt16(phnum), at: 44)
            image.put(UInt16(sectionNotes ? 40 : 0), at: 46); image.put(UInt16(sectionNotes ? 2 : 0), at: 48)
        }
        var phdrOffsets: [Int] = []
        func phdr(_ i: Int, type: UInt32, offset: Int, paddr: UInt64, filesz: Int, memsz: UInt64, align: UInt64) {
            let p = ehsize + i * phentsize
            phdrOffsets.append(p)
            image.put(type, at: p)
            if is64 {
                image.put(UInt32(7), at: p + 4); image.put(UInt64(offset), at: p + 8)
                image.put(paddr | 0xFFFF_FFFF_8000_0000, at: p + 16); image.put(paddr, at: p + 24)
                image.put(UInt64(filesz), at: p + 32); image.put(memsz, at: p + 40); image.put(align, at: p + 48)
            } else {
                image.put(UInt32(offset), at: p + 4); image.put(UInt32(paddr), at: p + 8); image.put(UInt32(paddr), at: p + 12)
                image.put(UInt32(filesz), at: p + 16); image.put(UInt32(memsz), at: p + 20)
                image.put(UInt32(7), at: p + 24); image.put(UInt32(align), at: p + 28)
            }
        }
        for (i, segment) in segments.enumerated() {
            phdr(i, type: 1, offset: dataOffsets[i], paddr: segment.paddr, filesz: segment.data.count,
                 memsz: segment.memsz, align: 0x1000)
        }
        if usePTNote {
            phdr(segments.count, type: 4, offset: noteOffset, paddr: 0, filesz: noteBlob.count, memsz: 0, align: 4)
        }
        return Built(image: image, phdrOffsets: phdrOffsets)
    }
}

/// Builds a bzImage with a synthesized setup header.
enum BootTestBzImage {
    static func build(setupSects: UInt8 = 4, version: UInt16 = 0x020F, loadflags: UInt8 = 0x01,
                      xloadflags: UInt16 = 0x03, relocatable: Bool = true, kernelAlignment: UInt32 = 0x20_0000,
                      prefAddress: UInt64 = 0x100_0000, initSize: UInt32 = 0x40_0000, cmdlineSize: UInt32 = 2048,
                      initrdAddrMax: UInt32 = 0x7FFF_FFFF, headerEnd: Int = 0x26C,
                      kernel: [UInt8] = Array((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7) })) -> [UInt8] {
        let sectors = setupSects == 0 ? 4 : Int(setupSects)
        var image = [UInt8](repeating: 0, count: (sectors + 1) * 512)
        image[0x1F1] = setupSects
        image.put(UInt32((kernel.count + 15) / 16), at: 0x1F4)
        image.put(UInt16(0xAA55), at: 0x1FE)
        image[0x200] = 0xEB
        image[0x201] = UInt8(headerEnd - 0x202)
        image.put(UInt32(0x5372_6448), at: 0x202)
        image.put(version, at: 0x206)
        image[0x211] = loadflags
        image.put(initrdAddrMax, at: 0x22C)
        image.put(kernelAlignment, at: 0x230)
        image[0x234] = relocatable ? 1 : 0
        image.put(xloadflags, at: 0x236)
        image.put(cmdlineSize, at: 0x238)
        image.put(prefAddress, at: 0x258)
        image.put(initSize, at: 0x260)
        image += kernel
        return image
    }
}

/// Guest memory for tests: one low region of `size` bytes, plus optional high RAM at 4 GiB.
func bootTestMemory(size: UInt64 = 64 << 20, high: UInt64 = 0) throws -> GuestMemory {
    var layout: [(base: UInt64, size: UInt64)] = [(0, size)]
    if high > 0 { layout.append((1 << 32, high)) }
    return try GuestMemory(layout: layout)
}

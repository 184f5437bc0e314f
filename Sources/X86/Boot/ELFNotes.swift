/// What Vireo learns from a kernel's ELF notes.
struct ELFNotes: Equatable {
    /// XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit PVH entry point.
    static let xenPhys32Entry: UInt32 = 18

    var pvhEntry: UInt32?
    var isLinux = false

    /// Walks every note in `regions`; a note that runs past its region is an error, not a guess.
    static func scan(_ regions: [ELFNoteRegion], in bytes: some ImageReading) throws(ELFError) -> ELFNotes {
        var result = ELFNotes()
        for region in regions {
            // Notes are 4-byte aligned except in 8-byte-aligned note segments (e.g. GNU property notes).
            let alignment = region.alignment == 8 ? 8 : 4
            let end = region.offset + region.size
            var cursor = region.offset
            while end - cursor >= 12 {
                let nameSize = Int(bytes.u32(cursor)), descSize = Int(bytes.u32(cursor + 4))
                let type = bytes.u32(cursor + 8)
                let nameStart = cursor + 12
                guard nameSize <= end - nameStart else {
                    throw .malformedNote("note at file offset \(hex(cursor)) has a \(nameSize)-byte name that runs past its \(region.size)-byte note area")
                }
                let descStart = pad(nameStart + nameSize, alignment)
                guard descStart <= end, descSize <= end - descStart else {
                    throw .malformedNote("note at file offset \(hex(cursor)) has a \(descSize)-byte descriptor that runs past its \(region.size)-byte note area")
                }
                let name = noteName(bytes.bytes(nameStart, nameSize))
                if name == "Linux" { result.isLinux = true }
                if name == "Xen", type == xenPhys32Entry, result.pvhEntry == nil {
                    result.pvhEntry = try pvhEntry(bytes, at: descStart, size: descSize)
                }
                cursor = min(pad(descStart + descSize, alignment), end)
            }
        }
        return result
    }

    /// The PVH entry descriptor: a 32-bit address stored in 4 bytes (32-bit kernels) or 8 (`.quad` in 64-bit Linux).
    private static func pvhEntry(_ bytes: some ImageReading, at offset: Int, size: Int) throws(ELFError) -> UInt32 {
        switch size {
        case 4:
            return bytes.u32(offset)
        case 8:
            let value = bytes.u64(offset)
            guard value <= UInt64(UInt32.max) else {
                throw .malformedNote("Xen PHYS32_ENTRY note value \(hex(value)) does not fit in 32 bits")
            }
            return UInt32(value)
        default:
            throw .malformedNote("Xen PHYS32_ENTRY note has a \(size)-byte descriptor, expected 4 or 8")
        }
    }

    /// The note name without its NUL terminator (names are NUL-terminated, namesz counts the NUL).
    private static func noteName(_ raw: [UInt8]) -> String {
        let trimmed = raw.prefix { $0 != 0 }
        return String(decoding: trimmed, as: UTF8.self)
    }

    private static func pad(_ value: Int, _ alignment: Int) -> Int {
        (value + alignment - 1) & ~(alignment - 1)
    }
}

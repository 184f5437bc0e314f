import Memory

/// A kernel file recognised as ELF or bzImage, ready to load.
public enum KernelImage: Equatable, Sendable {
    case elf(ELFKernel)
    case bzImage(BzImage)

    /// Which format the bytes look like, by magic alone (ELF ident, or "HdrS" at 0x202); nil if neither.
    public static func detectFormat(_ image: UnsafeRawBufferPointer) -> KernelImageFormat? {
        let bytes = BootBytes(image)
        if bytes.count >= 4, bytes.prefix(4) == ELFKernel.magic { return .elf }
        if bytes.count >= SetupHeader.Offset.header + 4, bytes.u32(SetupHeader.Offset.header) == SetupHeader.headerMagic {
            return .bzImage
        }
        return nil
    }

    public init(parsing image: [UInt8]) throws(KernelImageError) {
        self = try withBootBytes(image) { (raw) throws(KernelImageError) in try KernelImage(parsing: raw) }
    }

    public init(parsing image: UnsafeRawBufferPointer) throws(KernelImageError) {
        switch KernelImage.detectFormat(image) {
        case .elf:
            do { self = .elf(try ELFKernel(parsing: image)) } catch { throw .elf(error) }
        case .bzImage:
            do { self = .bzImage(try BzImage(parsing: image)) } catch { throw .bzImage(error) }
        case nil:
            throw .notAKernel(prefix: Array(image.prefix(8)), size: image.count)
        }
    }

    /// Loads the image (the same bytes it was parsed from) into guest memory.
    public func load(_ image: UnsafeRawBufferPointer, into memory: GuestMemory) throws(KernelImageError) -> LoadedKernel {
        switch self {
        case let .elf(kernel):
            do { return try kernel.load(image, into: memory) } catch { throw .elf(error) }
        case let .bzImage(kernel):
            do { return try kernel.load(image, into: memory) } catch { throw .bzImage(error) }
        }
    }

    /// Loads from an array.
    public func load(_ image: [UInt8], into memory: GuestMemory) throws(KernelImageError) -> LoadedKernel {
        try withBootBytes(image) { (raw) throws(KernelImageError) in try load(raw, into: memory) }
    }

    /// Parses and loads the file behind `source`: an ELF kernel through its headers and straight
    /// into guest RAM segment by segment, never held whole; any other file is read whole (a
    /// bzImage's setup header and payload are one blob, and the rest is refused by its magic).
    public static func load(from source: some KernelSource, into memory: GuestMemory) throws(KernelImageError) -> LoadedKernel {
        let magic: [UInt8]
        do { magic = try source.bytes(at: 0, count: min(source.size, 4)) } catch { throw .unreadable(error) }
        if magic == ELFKernel.magic {
            do {
                return try ELFKernel(parsing: source).load(from: source, into: memory)
            } catch {
                throw .elf(error)
            }
        }
        let whole: [UInt8]
        do { whole = try source.bytes(at: 0, count: source.size) } catch { throw .unreadable(error) }
        return try KernelImage(parsing: whole).load(whole, into: memory)
    }
}

/// The kernel container formats Vireo understands.
public enum KernelImageFormat: Equatable, Sendable { case elf, bzImage }

/// Why a kernel file could not be used.
public enum KernelImageError: Error, Equatable, Sendable, CustomStringConvertible {
    case notAKernel(prefix: [UInt8], size: Int)
    case elf(ELFError)
    case bzImage(BzImageError)
    case unreadable(KernelReadError)

    public var description: String {
        switch self {
        case let .notAKernel(prefix, size):
            if size == 0 { return "kernel image is empty" }
            // Never the bytes themselves: the file may be one the user could not otherwise read.
            let hint = KernelImageError.hint(prefix).map { " (it looks like \($0))" } ?? ""
            return "not an ELF or bzImage kernel\(hint)"
        case let .elf(error):
            return error.description
        case let .bzImage(error):
            return error.description
        case let .unreadable(error):
            return "kernel: \(error)"
        }
    }

    /// Names common non-kernel files by their magic, so the message says what was passed instead.
    static func hint(_ prefix: [UInt8]) -> String? {
        let known: [([UInt8], String)] = [
            ([0x1F, 0x8B], "gzip data (decompress it, or pass the bzImage)"),
            ([0x28, 0xB5, 0x2F, 0xFD], "zstd data"),
            ([0xFD, 0x37, 0x7A, 0x58, 0x5A], "xz data"),
            ([0x50, 0x4B, 0x03, 0x04], "a zip archive"),
            ([0x4D, 0x5A], "a PE/EFI executable without a Linux setup header"),
            ([0x30, 0x37, 0x30, 0x37, 0x30], "a cpio archive (an initrd?)"),
            ([0x51, 0x46, 0x49, 0xFB], "a qcow2 disk image"),
            ([0x23, 0x21], "a script"),
        ]
        return known.first { prefix.starts(with: $0.0) }?.1
    }
}

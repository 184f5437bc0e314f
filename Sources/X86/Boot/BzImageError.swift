import Memory

/// Why a bzImage kernel could not be parsed or loaded.
public enum BzImageError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated(String)
    case badBootFlag(UInt16)
    case badHeaderMagic(UInt32)
    case protocolTooOld(version: UInt16)
    case headerTooShort(length: Int, needed: Int)
    case notLoadedHigh
    case no64BitEntry
    case badKernelAlignment(UInt32)
    case badPreferredAddress(UInt64)
    case zeroInitSize
    case doesNotFit(address: UInt64, size: UInt64, problem: KernelPlacementProblem, what: String)
    case imageMismatch(parsedSize: Int, givenSize: Int)
    case memory(GuestMemoryError)

    public var description: String {
        switch self {
        case let .truncated(why):
            return "kernel image is truncated: \(why)"
        case .badBootFlag:
            return "not a bzImage: no 0xaa55 boot flag at 0x1fe"
        case .badHeaderMagic:
            return "not a bzImage: no \"HdrS\" setup header magic at 0x202"
        case let .protocolTooOld(version):
            return "bzImage boot protocol \(version >> 8).\(String(format2: version & 0xff)) is too old: Vireo needs 2.12 or newer for the 64-bit entry"
        case let .headerTooShort(length, needed):
            return "bzImage setup header is \(length) bytes long but boot protocol 2.12 needs at least \(needed)"
        case .notLoadedHigh:
            return "bzImage does not set LOADED_HIGH: it is a zImage that must load below 1 MiB, which Vireo does not support"
        case .no64BitEntry:
            return "bzImage does not set XLF_KERNEL_64: it has no 64-bit entry point"
        case let .badKernelAlignment(value):
            return "bzImage kernel_alignment \(hex(value)) is not a power of two of at least 4 KiB"
        case let .badPreferredAddress(value):
            return "non-relocatable bzImage asks to run at \(hex(value)), below 1 MiB"
        case .zeroInitSize:
            return "bzImage init_size is 0"
        case let .doesNotFit(address, size, problem, what):
            return "bzImage \(what) does not fit: \(KernelPlacement.describe(problem, address: address, size: size))"
        case let .imageMismatch(parsedSize, givenSize):
            return "bzImage given to load has \(givenSize) bytes but the parsed one had \(parsedSize)"
        case let .memory(error):
            return "loading bzImage: \(error)"
        }
    }
}

extension String {
    /// Two-digit decimal, for protocol minor versions ("2.06").
    init<T: BinaryInteger>(format2 value: T) {
        self = value < 10 ? "0\(value)" : "\(value)"
    }
}

import Memory

/// Why an ELF kernel could not be parsed or loaded.
public enum ELFError: Error, Equatable, Sendable, CustomStringConvertible {
    case notELF(prefix: [UInt8])
    case truncated(what: String, needed: UInt64, fileSize: Int)
    case unsupportedClass(UInt8)
    case unsupportedByteOrder(UInt8)
    case unsupportedVersion(UInt32)
    case notExecutable(type: UInt16)
    case wrongMachine(machine: UInt16, is64Bit: Bool)
    case badProgramHeaderTable(String)
    case badSectionHeaderTable(String)
    case noLoadableSegments
    case segmentOutsideFile(index: Int, offset: UInt64, size: UInt64, fileSize: Int)
    case segmentFileSizeExceedsMemorySize(index: Int, fileSize: UInt64, memorySize: UInt64)
    case segmentAddressOverflow(index: Int, address: UInt64, size: UInt64)
    case segmentsOverlap(first: Int, second: Int)
    case segmentNotLoadable(index: Int, address: UInt64, size: UInt64, problem: KernelPlacementProblem)
    case malformedNote(String)
    case imageMismatch(parsedSize: Int, givenSize: Int)
    case memory(GuestMemoryError)
    case unreadable(KernelReadError)

    public var description: String {
        switch self {
        case .notELF:
            return "not an ELF file (no ELF magic)"
        case let .truncated(what, needed, fileSize):
            return "ELF kernel is truncated: \(what) needs \(needed) bytes but the file has \(fileSize)"
        case let .unsupportedClass(value):
            return "unsupported ELF class \(value) (expected 1 for ELF32 or 2 for ELF64)"
        case let .unsupportedByteOrder(value):
            return "unsupported ELF data encoding \(value) (x86 kernels are little-endian, 1)"
        case let .unsupportedVersion(value):
            return "unsupported ELF version \(value) (expected 1)"
        case let .notExecutable(type):
            return "ELF type is \(type), not an executable (ET_EXEC, 2)"
        case let .wrongMachine(machine, is64Bit):
            return is64Bit
                ? "ELF64 kernel is for machine \(machine), not x86-64 (62)"
                : "ELF32 kernel is for machine \(machine), not i386 (3)"
        case let .badProgramHeaderTable(why):
            return "bad ELF program header table: \(why)"
        case let .badSectionHeaderTable(why):
            return "bad ELF section header table: \(why)"
        case .noLoadableSegments:
            return "ELF kernel has no loadable (PT_LOAD) segments"
        case let .segmentOutsideFile(index, offset, size, fileSize):
            return "ELF segment \(index) claims file bytes [\(hex(offset)), +\(hex(size))) but the file has \(fileSize) bytes"
        case let .segmentFileSizeExceedsMemorySize(index, fileSize, memorySize):
            return "ELF segment \(index) has file size \(hex(fileSize)) larger than its memory size \(hex(memorySize))"
        case let .segmentAddressOverflow(index, address, size):
            return "ELF segment \(index) at \(hex(address)) with size \(hex(size)) wraps past the end of the address space"
        case let .segmentsOverlap(first, second):
            return "ELF segments \(first) and \(second) overlap in physical memory"
        case let .segmentNotLoadable(index, address, size, problem):
            return "ELF segment \(index) cannot be loaded: \(KernelPlacement.describe(problem, address: address, size: size))"
        case let .malformedNote(why):
            return "malformed ELF note: \(why)"
        case let .imageMismatch(parsedSize, givenSize):
            return "ELF image given to load has \(givenSize) bytes but the parsed one had \(parsedSize)"
        case let .memory(error):
            return "loading ELF kernel: \(error)"
        case let .unreadable(error):
            return "ELF kernel: \(error)"
        }
    }
}

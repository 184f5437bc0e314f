import Memory

/// Why a boot structure (command line, initrd, zero page, PVH info, tables) could not be set up.
public enum BootSetupError: Error, Equatable, Sendable, CustomStringConvertible {
    case commandLineTooLong(length: Int, limit: Int)
    case commandLineContainsNUL(offset: Int)
    case emptyInitrd
    case initrdDoesNotFit(size: UInt64, ceiling: UInt64, kernel: Range<UInt64>)
    case noLowRAM
    case lowRAMTooSmall(end: UInt64)
    case tooManyMemoryMapEntries(count: Int, limit: Int)
    case cpuCountOutOfRange(requested: Int, limit: Int)
    case tableDoesNotFit(what: String, size: Int, room: Int)
    case memory(GuestMemoryError)
    case unreadableInitrd(KernelReadError)

    public var description: String {
        switch self {
        case let .commandLineTooLong(length, limit):
            return "kernel command line is \(length) bytes but at most \(limit) are allowed (excluding the NUL)"
        case let .commandLineContainsNUL(offset):
            return "kernel command line contains a NUL byte at offset \(offset)"
        case .emptyInitrd:
            return "initrd is empty"
        case let .initrdDoesNotFit(size, ceiling, kernel):
            return "initrd of \(size) bytes does not fit: it must lie between 1 MiB and \(hex(ceiling)) without overlapping the kernel at [\(hex(kernel.lowerBound)), \(hex(kernel.upperBound)))"
        case .noLowRAM:
            return "guest RAM has no region starting at address 0"
        case let .lowRAMTooSmall(end):
            return "guest RAM below 4 GiB ends at \(hex(end)); x86 boot needs RAM above 1 MiB"
        case let .tooManyMemoryMapEntries(count, limit):
            return "memory map has \(count) entries but the boot structure holds at most \(limit)"
        case let .cpuCountOutOfRange(requested, limit):
            return "MP table supports 1 to \(limit) CPUs (8-bit APIC IDs, the IOAPIC takes the next ID), not \(requested)"
        case let .tableDoesNotFit(what, size, room):
            return "\(what) is \(size) bytes but only \(room) bytes are set aside for it"
        case let .memory(error):
            return "writing boot structures: \(error)"
        case let .unreadableInitrd(error):
            return "initrd: \(error)"
        }
    }
}

import Memory

/// Why a kernel byte range cannot be loaded where it asks to be.
public enum KernelPlacementProblem: Equatable, Sendable {
    /// The range is not wholly inside one guest RAM region.
    case notRAM
    /// The range overlaps one of Vireo's low-memory boot structures.
    case overlapsBootStructures(Range<UInt64>)
}

/// Checks kernel ranges against guest RAM and `BootLayout.bootStructureRanges`.
enum KernelPlacement {
    static func problem(address: UInt64, size: UInt64, memory: GuestMemory) -> KernelPlacementProblem? {
        guard size > 0 else { return nil }
        guard address.addingReportingOverflow(size).overflow == false,
              memory.isRAM(address, length: size) else { return .notRAM }
        let range = address..<(address + size)
        for reserved in BootLayout.bootStructureRanges where overlaps(range, reserved) {
            return .overlapsBootStructures(reserved)
        }
        return nil
    }

    static func describe(_ problem: KernelPlacementProblem, address: UInt64, size: UInt64) -> String {
        let range = "[\(hex(address)), \(hex(address &+ size)))"
        switch problem {
        case .notRAM:
            return "\(range) is not inside guest RAM"
        case let .overlapsBootStructures(reserved):
            return "\(range) overlaps Vireo's boot structures at [\(hex(reserved.lowerBound)), \(hex(reserved.upperBound))) (only [\(hex(BootLayout.guestFreeLow.lowerBound)), \(hex(BootLayout.guestFreeLow.upperBound))) is free below 1 MiB)"
        }
    }
}

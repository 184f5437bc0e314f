import Memory

/// An Intel MultiProcessor Specification 1.4 table, so a guest without ACPI finds its CPUs, IOAPIC and ISA IRQs.
///
/// The floating pointer sits at the start of the EBDA (0x9FC00, where Linux scans); the config
/// table follows it. Up to 40 CPUs the whole thing fits in the EBDA's first KiB; larger tables spill
/// into the legacy VGA window, which is e820-reserved like the rest of [0x9FC00, 1 MiB).
///
/// ISA IRQs 0–15 go to IOAPIC pins 0–15 one-to-one, as Firecracker does: KVM's default in-kernel
/// IOAPIC routing sends GSI n to pin n (the PIT included), so the PC-style IRQ0 → pin 2 override
/// would point the timer at a pin nothing drives.
public struct MPTable: Equatable, Sendable {
    public static let floatingPointerSize = 16
    public static let headerSize = 44
    public static let processorEntrySize = 20
    public static let entrySize = 8
    public static let isaIRQCount = 16
    /// APIC IDs are 8 bits, 0xFF is broadcast, and the IOAPIC takes ID `cpuCount`.
    public static let maximumCPUs = 254
    public static let specRevision: UInt8 = 4
    public static let localAPICAddress: UInt32 = 0xFEE0_0000
    public static let ioAPICAddress: UInt32 = 0xFEC0_0000
    public static let localAPICVersion: UInt8 = 0x14
    public static let ioAPICVersion: UInt8 = 0x11
    /// CPUID family 6 signature and FPU|APIC feature flags, as the spec's processor entry expects.
    public static let cpuSignature: UInt32 = 0x600
    public static let cpuFeatures: UInt32 = 0x201
    public static let oemID = "VIREO"
    public static let productID = "VIREO VMM"

    // Entry types and values from MP spec 1.4, chapter 4.
    static let processorType: UInt8 = 0, busType: UInt8 = 1, ioAPICType: UInt8 = 2
    static let ioInterruptType: UInt8 = 3, localInterruptType: UInt8 = 4
    static let interruptINT: UInt8 = 0, interruptNMI: UInt8 = 1, interruptExtINT: UInt8 = 3
    static let cpuEnabled: UInt8 = 1, cpuBootstrap: UInt8 = 2
    static let allLocalAPICs: UInt8 = 0xFF

    public let cpuCount: Int
    /// Floating pointer followed by the config table, to be written at `BootLayout.ebda`.
    public let bytes: [UInt8]

    /// Guest-physical address of the config table.
    public static let configTableAddress = BootLayout.ebda + UInt64(floatingPointerSize)

    /// Entries in the config table for `cpuCount` CPUs: processors, one bus, one IOAPIC, 16 IRQs, 2 local interrupts.
    public static func entryCount(cpuCount: Int) -> Int { cpuCount + 2 + isaIRQCount + 2 }

    /// Base config table length (header plus entries).
    public static func configTableSize(cpuCount: Int) -> Int {
        headerSize + cpuCount * processorEntrySize + (2 + isaIRQCount + 2) * entrySize
    }

    /// Total bytes from the floating pointer to the end of the config table.
    public static func size(cpuCount: Int) -> Int { floatingPointerSize + configTableSize(cpuCount: cpuCount) }

    public init(cpuCount: Int) throws(BootSetupError) {
        guard (1...MPTable.maximumCPUs).contains(cpuCount) else {
            throw .cpuCountOutOfRange(requested: cpuCount, limit: MPTable.maximumCPUs)
        }
        let total = MPTable.size(cpuCount: cpuCount)
        let room = Int(BootLayout.mpTableEnd - BootLayout.ebda)
        guard total <= room else { throw .tableDoesNotFit(what: "MP table for \(cpuCount) CPUs", size: total, room: room) }

        var table = [UInt8](repeating: 0, count: total)
        let ioAPICID = UInt8(cpuCount)

        // Floating pointer: "_MP_", physical pointer, length in 16-byte units, revision, checksum.
        table.bootStoreASCII("_MP_", at: 0, width: 4)
        table.bootStore(UInt32(MPTable.configTableAddress), at: 4)
        table[8] = 1
        table[9] = MPTable.specRevision
        // Feature bytes 1–5 stay 0: a config table is present and the IMCR is absent (virtual wire mode).

        let header = MPTable.floatingPointerSize
        table.bootStoreASCII("PCMP", at: header, width: 4)
        table.bootStore(UInt16(MPTable.configTableSize(cpuCount: cpuCount)), at: header + 4)
        table[header + 6] = MPTable.specRevision
        table.bootStoreASCII(MPTable.oemID, at: header + 8, width: 8)
        table.bootStoreASCII(MPTable.productID, at: header + 16, width: 12)
        table.bootStore(UInt16(MPTable.entryCount(cpuCount: cpuCount)), at: header + 34)
        table.bootStore(MPTable.localAPICAddress, at: header + 36)

        var cursor = header + MPTable.headerSize
        for cpu in 0..<cpuCount {
            table[cursor] = MPTable.processorType
            table[cursor + 1] = UInt8(cpu)
            table[cursor + 2] = MPTable.localAPICVersion
            table[cursor + 3] = MPTable.cpuEnabled | (cpu == 0 ? MPTable.cpuBootstrap : 0)
            table.bootStore(MPTable.cpuSignature, at: cursor + 4)
            table.bootStore(MPTable.cpuFeatures, at: cursor + 8)
            cursor += MPTable.processorEntrySize
        }
        table[cursor] = MPTable.busType
        table[cursor + 1] = 0
        table.bootStoreASCII("ISA", at: cursor + 2, width: 6)
        cursor += MPTable.entrySize

        table[cursor] = MPTable.ioAPICType
        table[cursor + 1] = ioAPICID
        table[cursor + 2] = MPTable.ioAPICVersion
        table[cursor + 3] = 1 // usable
        table.bootStore(MPTable.ioAPICAddress, at: cursor + 4)
        cursor += MPTable.entrySize

        for irq in 0..<MPTable.isaIRQCount {
            // Flags 0: polarity and trigger conform to the ISA bus (active high, edge).
            table[cursor] = MPTable.ioInterruptType
            table[cursor + 1] = MPTable.interruptINT
            table[cursor + 4] = 0 // source bus: ISA
            table[cursor + 5] = UInt8(irq)
            table[cursor + 6] = ioAPICID
            table[cursor + 7] = UInt8(irq)
            cursor += MPTable.entrySize
        }

        // The 8259 PIC reaches the BSP's LINT0 (virtual wire); NMI goes to LINT1 on every CPU.
        table[cursor] = MPTable.localInterruptType
        table[cursor + 1] = MPTable.interruptExtINT
        table[cursor + 6] = 0
        table[cursor + 7] = 0
        cursor += MPTable.entrySize
        table[cursor] = MPTable.localInterruptType
        table[cursor + 1] = MPTable.interruptNMI
        table[cursor + 6] = MPTable.allLocalAPICs
        table[cursor + 7] = 1
        cursor += MPTable.entrySize
        precondition(cursor == total)

        table[header + 7] = MPTable.checksum(table[header..<total])
        table[10] = MPTable.checksum(table[0..<MPTable.floatingPointerSize])
        self.cpuCount = cpuCount
        self.bytes = table
    }

    /// The byte that makes `bytes` (with it in place, currently 0) sum to zero mod 256.
    static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt8 {
        0 &- bytes.reduce(0, &+)
    }

    /// Writes the floating pointer and config table at `BootLayout.ebda`.
    public func write(into memory: GuestMemory) throws(BootSetupError) {
        do { try memory.write(bytes, at: BootLayout.ebda) } catch { throw .memory(error) }
    }
}

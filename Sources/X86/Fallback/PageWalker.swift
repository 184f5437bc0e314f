import KVM
import Memory

// Control-register bits the walk depends on.
private let cr0PG: UInt64 = 1 << 31
private let cr0WP: UInt64 = 1 << 16
private let cr4PSE: UInt64 = 1 << 4
private let cr4PAE: UInt64 = 1 << 5
private let cr4LA57: UInt64 = 1 << 12
private let cr4SMEP: UInt64 = 1 << 20
private let cr4SMAP: UInt64 = 1 << 21
private let eferLMA: UInt64 = 1 << 10
private let eferNXE: UInt64 = 1 << 11

// Paging-structure entry bits.
private let entryPresent: UInt64 = 1 << 0
private let entryWritable: UInt64 = 1 << 1
private let entryUser: UInt64 = 1 << 2
private let entryLarge: UInt64 = 1 << 7
private let entryNoExecute: UInt64 = 1 << 63
/// Bits 51:12: the next table or page frame (MAXPHYADDR is taken as 52).
private let entryAddressMask: UInt64 = 0x000f_ffff_ffff_f000

/// Access rights accumulated over the levels of one walk: the most restrictive wins.
private struct PageRights {
    var writable = true
    var user = true
    var noExecute = false

    @inline(__always)
    mutating func accumulate(_ entry: UInt64, noExecuteEnabled: Bool) {
        writable = writable && entry & entryWritable != 0
        user = user && entry & entryUser != 0
        noExecute = noExecute || (noExecuteEnabled && entry & entryNoExecute != 0)
    }
}

/// The parts of the vCPU state one walk needs, read once.
private struct PageWalkContext {
    let access: PageWalker.Access
    /// A CPL-3 access: U/S must be set at every level.
    let user: Bool
    let writeProtect: Bool
    let noExecuteEnabled: Bool
    let smep: Bool
    let smap: Bool
    /// Whether fetch faults report I/D (NX in force under PAE/long-mode paging, or SMEP).
    let reportsFetch: Bool

    init(_ access: PageWalker.Access, _ special: SpecialRegisters) {
        self.access = access
        user = (access.cpl ?? special.cpl) == 3
        writeProtect = special.cr0 & cr0WP != 0
        let paeFormat = special.cr4 & cr4PAE != 0 || special.efer & eferLMA != 0
        noExecuteEnabled = paeFormat && special.efer & eferNXE != 0
        smep = special.cr4 & cr4SMEP != 0
        smap = special.cr4 & cr4SMAP != 0
        reportsFetch = access.kind == .fetch && (noExecuteEnabled || smep)
    }

    func fault(_ linear: UInt64, present: Bool, reserved: Bool = false) -> PageWalker.Failure {
        var code: UInt32 = present ? PageWalker.Fault.present : 0
        if access.kind == .write { code |= PageWalker.Fault.write }
        if user { code |= PageWalker.Fault.user }
        if reserved { code |= PageWalker.Fault.reservedBit }
        if reportsFetch { code |= PageWalker.Fault.instructionFetch }
        return .pageFault(PageWalker.Fault(errorCode: code, address: linear))
    }

    /// Throws a protection #PF when the leaf's accumulated rights forbid the access.
    func check(_ rights: PageRights, _ linear: UInt64) throws(PageWalker.Failure) {
        let kind = access.kind
        if user {
            if !rights.user || (kind == .write && !rights.writable) {
                throw fault(linear, present: true)
            }
        } else {
            // Supervisor writes ignore R/W unless CR0.WP is set.
            if kind == .write && !rights.writable && writeProtect { throw fault(linear, present: true) }
            if rights.user {
                if kind == .fetch && smep { throw fault(linear, present: true) }
                if kind != .fetch && smap && !access.alignmentCheck { throw fault(linear, present: true) }
            }
        }
        if kind == .fetch && rights.noExecute { throw fault(linear, present: true) }
    }
}

extension PageWalker {
    /// Translates `linear` for `access` under the paging mode selected by CR0.PG, CR4.PAE/LA57 and EFER.LMA.
    ///
    /// Accessed/dirty bits are not updated. Paging-structure reads go through `memory`, so an entry
    /// outside guest RAM is reported as `.tableOutsideRAM`, never read from the host.
    public static func translate(_ linear: UInt64, access: Access, special: SpecialRegisters,
                                 memory: GuestMemory) -> Result<UInt64, Failure> {
        do throws(Failure) {
            return .success(try walk(linear, access: access, special: special, memory: memory))
        } catch {
            return .failure(error)
        }
    }

    private static func walk(_ linear: UInt64, access: Access, special: SpecialRegisters,
                             memory: GuestMemory) throws(Failure) -> UInt64 {
        let longMode = special.efer & eferLMA != 0
        guard special.cr0 & cr0PG != 0 else {
            return longMode ? linear : linear & 0xffff_ffff   // paging off: identity
        }
        let context = PageWalkContext(access, special)
        if longMode {
            let fiveLevel = special.cr4 & cr4LA57 != 0
            // Canonical: bits 63 down to 47 (or 56) all equal.
            let top = Int64(bitPattern: linear) >> (fiveLevel ? 56 : 47)
            guard top == 0 || top == -1 else { throw .nonCanonical(linear) }
            return try walk(linear, table: special.cr3 & entryAddressMask, level: fiveLevel ? 5 : 4,
                            rights: PageRights(), context: context, memory: memory)
        }
        let linear32 = linear & 0xffff_ffff
        if special.cr4 & cr4PAE != 0 {
            // PAE: four PDPTEs at CR3[31:5]; they carry only P, no rights.
            let pdpteAddress = (special.cr3 & 0xffff_ffe0) + ((linear32 >> 30) & 3) * 8
            let pdpte = try readEntry64(pdpteAddress, level: 3, memory: memory)
            guard pdpte & entryPresent != 0 else { throw context.fault(linear32, present: false) }
            return try walk(linear32, table: pdpte & entryAddressMask, level: 2, rights: PageRights(),
                            context: context, memory: memory)
        }
        return try walk32(linear32, special: special, context: context, memory: memory)
    }

    /// Walks 64-bit entries from `level` (5…1) down; used by long-mode and PAE paging.
    private static func walk(_ linear: UInt64, table startTable: UInt64, level startLevel: Int,
                             rights startRights: PageRights, context: PageWalkContext,
                             memory: GuestMemory) throws(Failure) -> UInt64 {
        var table = startTable
        var rights = startRights
        var level = startLevel
        while true {
            let shift = UInt64(12 + 9 * (level - 1))
            let entryAddress = table | (((linear >> shift) & 0x1ff) << 3)
            let entry = try readEntry64(entryAddress, level: level, memory: memory)
            guard entry & entryPresent != 0 else { throw context.fault(linear, present: false) }
            if entry & entryNoExecute != 0 && !context.noExecuteEnabled {
                throw context.fault(linear, present: true, reserved: true)   // XD is reserved without NXE
            }
            rights.accumulate(entry, noExecuteEnabled: context.noExecuteEnabled)
            let large = entry & entryLarge != 0
            if level == 1 || (large && level <= 3) {
                let pageMask: UInt64 = (1 << shift) - 1
                // Large-page frames must be aligned: bits (shift-1):13 are reserved (bit 12 is PAT).
                if level > 1 && entry & pageMask & ~0x1fff != 0 {
                    throw context.fault(linear, present: true, reserved: true)
                }
                try context.check(rights, linear)
                return (entry & entryAddressMask & ~pageMask) | (linear & pageMask)
            }
            if large { throw context.fault(linear, present: true, reserved: true) }   // PS is reserved in PML4E/PML5E
            table = entry & entryAddressMask
            level -= 1
        }
    }

    /// Non-PAE 32-bit paging: 4 KiB pages, or 4 MiB pages when CR4.PSE and PDE.PS are set.
    private static func walk32(_ linear: UInt64, special: SpecialRegisters, context: PageWalkContext,
                               memory: GuestMemory) throws(Failure) -> UInt64 {
        var rights = PageRights()
        let pdeAddress = (special.cr3 & 0xffff_f000) | ((linear >> 22) << 2)
        let pde = try readEntry32(pdeAddress, level: 2, memory: memory)
        guard pde & entryPresent != 0 else { throw context.fault(linear, present: false) }
        rights.accumulate(pde, noExecuteEnabled: false)
        if pde & entryLarge != 0 && special.cr4 & cr4PSE != 0 {
            if pde & (1 << 21) != 0 { throw context.fault(linear, present: true, reserved: true) }
            try context.check(rights, linear)
            // PSE-36: PDE bits 20:13 are physical-address bits 39:32.
            return (pde & 0xffc0_0000) | (((pde >> 13) & 0xff) << 32) | (linear & 0x3f_ffff)
        }
        let pteAddress = (pde & 0xffff_f000) | (((linear >> 12) & 0x3ff) << 2)
        let pte = try readEntry32(pteAddress, level: 1, memory: memory)
        guard pte & entryPresent != 0 else { throw context.fault(linear, present: false) }
        rights.accumulate(pte, noExecuteEnabled: false)
        try context.check(rights, linear)
        return (pte & 0xffff_f000) | (linear & 0xfff)
    }

    @inline(__always)
    private static func readEntry64(_ address: UInt64, level: Int, memory: GuestMemory) throws(Failure) -> UInt64 {
        do { return try memory.read(UInt64.self, at: address) } catch {
            throw .tableOutsideRAM(entryAddress: address, level: level)
        }
    }

    @inline(__always)
    private static func readEntry32(_ address: UInt64, level: Int, memory: GuestMemory) throws(Failure) -> UInt64 {
        do { return UInt64(try memory.read(UInt32.self, at: address)) } catch {
            throw .tableOutsideRAM(entryAddress: address, level: level)
        }
    }
}

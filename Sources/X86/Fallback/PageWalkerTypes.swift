import KVM

/// Translates guest linear addresses to guest-physical ones by walking the guest's page tables.
public enum PageWalker {}

extension PageWalker {
    /// What the access does to the page.
    public enum AccessKind: Equatable, Sendable {
        case read, write, fetch
    }

    /// One access to translate: its kind and the privilege it is made with.
    public struct Access: Equatable, Sendable {
        /// Read, write or instruction fetch.
        public var kind: AccessKind
        /// The privilege level of the access; nil means the CPL in `SpecialRegisters`.
        public var cpl: UInt8?
        /// RFLAGS.AC: with CR4.SMAP it lets supervisor data accesses reach user pages (stac).
        public var alignmentCheck: Bool

        /// An access of `kind` at `cpl` (nil: the vCPU's CPL); `alignmentCheck` is RFLAGS.AC.
        public init(_ kind: AccessKind, cpl: UInt8? = nil, alignmentCheck: Bool = false) {
            self.kind = kind
            self.cpl = cpl
            self.alignmentCheck = alignmentCheck
        }

        /// A data read at the vCPU's CPL.
        public static let read = Access(.read)
        /// A data write at the vCPU's CPL.
        public static let write = Access(.write)
        /// An instruction fetch at the vCPU's CPL.
        public static let fetch = Access(.fetch)
    }

    /// A #PF to inject: error code and the linear address that goes to CR2.
    public struct Fault: Equatable, Sendable {
        /// Error-code bit 0: the page was present (a protection or reserved-bit violation).
        public static let present: UInt32 = 1 << 0
        /// Error-code bit 1: the access was a write.
        public static let write: UInt32 = 1 << 1
        /// Error-code bit 2: the access was made at CPL 3.
        public static let user: UInt32 = 1 << 2
        /// Error-code bit 3: a reserved bit was set in a paging-structure entry.
        public static let reservedBit: UInt32 = 1 << 3
        /// Error-code bit 4: the access was an instruction fetch (reported when NXE or SMEP is on).
        public static let instructionFetch: UInt32 = 1 << 4

        /// The #PF error code.
        public var errorCode: UInt32
        /// The faulting linear address (CR2).
        public var address: UInt64

        /// A fault with `errorCode` at linear `address`.
        public init(errorCode: UInt32, address: UInt64) {
            self.errorCode = errorCode
            self.address = address
        }

        /// The exception to inject (vector 14 with the error code).
        public var exception: PendingException { PendingException(vector: 14, errorCode: errorCode) }
    }

    /// Why a linear address has no physical translation.
    public enum Failure: Error, Equatable, Sendable {
        /// The guest takes a page fault.
        case pageFault(Fault)
        /// A 64-bit linear address that is not canonical (#GP or #SS, not #PF).
        case nonCanonical(UInt64)
        /// A paging-structure entry lies outside guest RAM; nothing was read from the host there.
        case tableOutsideRAM(entryAddress: UInt64, level: Int)
    }
}

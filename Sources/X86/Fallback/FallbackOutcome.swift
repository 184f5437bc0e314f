import KVM

/// What `InstructionFallback.emulate` did with one instruction.
public enum FallbackOutcome: Equatable, Sendable {
    /// Emulated: registers updated and RIP advanced past the instruction.
    case emulated(Mnemonic)
    /// Inject `exception`; RIP is already where the exception needs it (after a trap, at a fault).
    /// `faultAddress` is the CR2 value for #PF, else nil.
    case inject(PendingException, faultAddress: UInt64?)
    /// Neither emulated nor turned into an exception: the VMM should stop with `failure.description`.
    case unsupported(FallbackFailure)
}

/// Why an instruction could not be handled, with a one-line message for the operator.
public struct FallbackFailure: Equatable, Sendable, CustomStringConvertible {
    /// The category of failure.
    public enum Reason: Equatable, Sendable {
        /// The bytes do not decode (truncated, VEX-encoded, …).
        case undecodable(InstructionDecoder.DecodeError)
        /// Decoded, but not in the name table.
        case unknownInstruction
        /// Named, but the fallback does not emulate it.
        case notEmulated
        /// A memory operand translated to a guest-physical address that is not RAM (e.g. MMIO).
        case operandNotRAM(physicalAddress: UInt64)
        /// A paging-structure entry for the operand lies outside guest RAM.
        case pageTableNotRAM(entryAddress: UInt64)
    }

    /// The category.
    public let reason: Reason
    /// The instruction's name, when the decoder knows it.
    public let mnemonic: Mnemonic?
    /// E.g. "cannot emulate xrstor [rdi] at rip 0xffffffff81000000 (bytes 48 0f ae 2f)".
    public let description: String

    /// A failure with an already formatted message.
    public init(reason: Reason, mnemonic: Mnemonic?, description: String) {
        self.reason = reason
        self.mnemonic = mnemonic
        self.description = description
    }
}

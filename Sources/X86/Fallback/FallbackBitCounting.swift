// popcnt / lzcnt / tzcnt / bsf / bsr arithmetic and their RFLAGS effects (Intel SDM vol. 2).

/// RFLAGS bits touched by the emulated instructions.
enum FallbackFlags {
    static let carry: UInt64 = 1 << 0
    static let parity: UInt64 = 1 << 2
    static let adjust: UInt64 = 1 << 4
    static let zero: UInt64 = 1 << 6
    static let sign: UInt64 = 1 << 7
    static let overflow: UInt64 = 1 << 11
    static let resume: UInt64 = 1 << 16
    static let alignmentCheck: UInt64 = 1 << 18
}

/// Result of a bit-count instruction: the destination value (nil: destination unchanged) and new RFLAGS.
struct FallbackBitCountResult: Equatable {
    var value: UInt64?
    var rflags: UInt64
}

enum FallbackBitCounting {
    /// Computes `mnemonic` on `source` (already masked to `size` bytes). Returns nil for other mnemonics.
    @inline(__always)
    static func compute(_ mnemonic: Mnemonic, source raw: UInt64, size: Int, rflags: UInt64) -> FallbackBitCountResult? {
        let bits = UInt64(size * 8)
        let source = bits == 64 ? raw : raw & ((1 << bits) - 1)
        // Leading zeros within the operand width (source is zero-extended into 64 bits).
        let leading = UInt64(source.leadingZeroBitCount) - (64 - bits)
        let trailing = UInt64(source.trailingZeroBitCount)
        var flags = rflags

        switch mnemonic {
        case .popcnt:
            // ZF iff source is zero; OF SF AF CF PF cleared.
            flags &= ~(FallbackFlags.overflow | FallbackFlags.sign | FallbackFlags.adjust
                | FallbackFlags.carry | FallbackFlags.parity)
            set(&flags, FallbackFlags.zero, source == 0)
            return FallbackBitCountResult(value: UInt64(source.nonzeroBitCount), rflags: flags)
        case .lzcnt, .tzcnt:
            // Result is the operand width for a zero source; CF = source was zero, ZF = result is zero.
            // OF SF AF PF are undefined: left unchanged.
            let result = source == 0 ? bits : (mnemonic == .lzcnt ? leading : trailing)
            set(&flags, FallbackFlags.carry, source == 0)
            set(&flags, FallbackFlags.zero, result == 0)
            return FallbackBitCountResult(value: result, rflags: flags)
        case .bsf, .bsr:
            // Zero source: ZF set, destination unchanged (as AMD documents and Intel parts do).
            set(&flags, FallbackFlags.zero, source == 0)
            guard source != 0 else { return FallbackBitCountResult(value: nil, rflags: flags) }
            let result = mnemonic == .bsf ? trailing : bits - 1 - leading
            return FallbackBitCountResult(value: result, rflags: flags)
        default:
            return nil
        }
    }

    @inline(__always)
    private static func set(_ flags: inout UInt64, _ flag: UInt64, _ on: Bool) {
        flags = on ? flags | flag : flags & ~flag
    }
}

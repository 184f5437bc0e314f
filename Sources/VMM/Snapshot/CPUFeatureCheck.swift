import KVM

/// Refuses a restore on a host whose CPU lacks feature bits the snapshot's guest was given.
enum CPUFeatureCheck {
    /// A CPUID output register.
    enum Register: String, CaseIterable {
        case eax, ebx, ecx, edx

        func value(in entry: CPUIDEntry) -> UInt32 {
            switch self {
            case .eax: return entry.eax
            case .ebx: return entry.ebx
            case .ecx: return entry.ecx
            case .edx: return entry.edx
            }
        }
    }

    /// (leaf, subleaf, register, bits Vireo itself adds and so are not host features).
    private static let checked: [(leaf: UInt32, subleaf: UInt32, register: Register, ignored: UInt32)] = [
        (0x1, 0, .ecx, 1 << 31), (0x1, 0, .edx, 1 << 28),
        (0x7, 0, .ebx, 0), (0x7, 0, .ecx, 0), (0x7, 0, .edx, 0),
        (0x8000_0001, 0, .ecx, 0), (0x8000_0001, 0, .edx, 0),
    ]

    static func verify(snapshot: [CPUIDEntry], host: [CPUIDEntry]) throws(SnapshotError) {
        var missing: [String] = []
        for (leaf, subleaf, register, ignored) in checked {
            guard let saved = entry(snapshot, leaf, subleaf) else { continue }
            let want = register.value(in: saved) & ~ignored
            let have = entry(host, leaf, subleaf).map(register.value(in:)) ?? 0
            let lacking = want & ~have
            for bit in 0..<32 where lacking & (1 << bit) != 0 {
                missing.append("CPUID.\(String(leaf, radix: 16)).\(register.rawValue)[\(bit)]")
            }
        }
        if !missing.isEmpty { throw .missingCPUFeatures(missing.joined(separator: ", ")) }
    }

    private static func entry(_ table: [CPUIDEntry], _ leaf: UInt32, _ subleaf: UInt32) -> CPUIDEntry? {
        table.first { $0.function == leaf && ($0.flags & CPUIDEntry.significantIndex == 0 || $0.index == subleaf) }
    }
}

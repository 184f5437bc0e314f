import KVM

/// The CPUID table each vCPU sees: KVM's supported leaves plus topology and hypervisor leaves.
public enum CPUIDPolicy {
    /// Hypervisor timing leaf (VMware convention also read by our micro-guests): EAX = TSC kHz, EBX = LAPIC bus kHz.
    public static let timingLeaf: UInt32 = 0x4000_0010
    /// KVM's LAPIC timer runs at 1 GHz.
    static let lapicBusKHz: UInt32 = 1_000_000

    /// KVM paravirt features that work by hypercall (KVM_FEATURE_PV_UNHALT, PV_SEND_IPI, PV_SCHED_YIELD).
    /// On PVM hosts a guest's hypercall never completes (the AP of an SMP Linux guest sat forever in
    /// kvm_hypercall4 sending a PV IPI), so they are hidden there; Linux then uses plain APIC IPIs.
    public static let hypercallFeatures: UInt32 = (1 << 7) | (1 << 11) | (1 << 13)

    /// Adapts `supported` for vCPU `index` of `count` (APIC id = index).
    public static func entries(supported: [CPUIDEntry], index: UInt32, count: UInt32, tscKHz: UInt32?,
                               hypercallsWork: Bool = true) -> [CPUIDEntry] {
        var result: [CPUIDEntry] = []
        result.reserveCapacity(supported.count + 1)
        var hasTimingLeaf = false
        for var entry in supported {
            switch entry.function {
            case 0x1:
                // EBX: APIC id, logical processors per package, CLFLUSH line size (8 × 8 bytes).
                entry.ebx = (index << 24) | (min(count, 255) << 16) | (8 << 8)
                entry.ecx |= 1 << 31  // running under a hypervisor
                if count > 1 { entry.edx |= 1 << 28 } else { entry.edx &= ~(1 << 28) }
            case 0xB, 0x1F:
                entry.edx = index  // x2APIC id of this vCPU at every topology level
            case 0x4000_0001 where !hypercallsWork:
                entry.eax &= ~hypercallFeatures
            case 0x4000_0000:
                // Keep KVM's signature; announce the timing leaf too.
                entry.eax = max(entry.eax, timingLeaf)
            case timingLeaf:
                hasTimingLeaf = true
                entry.eax = tscKHz ?? entry.eax
                entry.ebx = lapicBusKHz
            default:
                break
            }
            result.append(entry)
        }
        if !hasTimingLeaf, let tscKHz, supported.contains(where: { $0.function == 0x4000_0000 }) {
            result.append(CPUIDEntry(function: timingLeaf, eax: tscKHz, ebx: lapicBusKHz))
        }
        return result
    }
}

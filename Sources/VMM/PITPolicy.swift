import KVM

/// Whether a freshly booted VM gets KVM's in-kernel i8254 PIT.
///
/// Linux on KVM keeps time with kvmclock and the LAPIC's TSC deadline timer and never needs the
/// PIT then (a KVM guest also skips the IO-APIC timer check). The PIT is not free: the kernel
/// starts a worker thread for it (~2 ms of a VM's start) and tears it down through four SRCU grace
/// periods when the VM ends (~10–16 ms of its exit). So, as Cloud Hypervisor does, it is left out
/// when the guest gets the TSC deadline timer, and `--pit on` brings it back for kernels that
/// calibrate against it (no `CONFIG_KVM_GUEST`).
enum PITPolicy {
    /// `requested`: `--pit on` (true), `off` (false), `auto` (nil).
    static func wanted(_ requested: Bool?, kvm: KVMSystem, hostCPUID: [CPUIDEntry]) -> Bool {
        if let requested { return requested }
        return !guestHasTSCDeadlineTimer(kvm: kvm, hostCPUID: hostCPUID)
    }

    /// The LAPIC's TSC deadline mode: KVM must emulate it (KVM_CAP_TSC_DEADLINE_TIMER) and the CPUID
    /// the guest gets (KVM's supported leaf 1, passed through) must announce it (ECX bit 24).
    static func guestHasTSCDeadlineTimer(kvm: KVMSystem, hostCPUID: [CPUIDEntry]) -> Bool {
        guard kvm.capability(.tscDeadlineTimer) != 0 else { return false }
        guard let leaf1 = hostCPUID.first(where: { $0.function == 1 }) else { return false }
        return leaf1.ecx & (1 << 24) != 0
    }
}

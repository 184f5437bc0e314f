import KVM
import Synchronization

/// /dev/kvm opened and its supported CPUID read ahead of time, by a warm-pool VMM while it waits
/// for a VM (`vireo-vmm pool`): neither depends on the VM, and the first `Machine` takes them.
/// Only the system descriptor is kept; a KVM VM belongs to the process that creates it, and a jailed
/// VMM is a child forked once the VM's spec is known, so KVM_CREATE_VM stays with the Machine.
public enum KVMPrewarm {
    private static let opened = Mutex<(kvm: KVMSystem, supportedCPUID: [CPUIDEntry])?>(nil)

    /// Opens /dev/kvm and reads its CPUID now; a failure is left for the Machine to report.
    public static func prepare() {
        guard let host = try? Machine.openKVM(cpus: 1) else { return }
        opened.withLock { $0 = host }
    }

    /// What `prepare` opened, once.
    static func take() -> (kvm: KVMSystem, supportedCPUID: [CPUIDEntry])? {
        opened.withLock { value in
            defer { value = nil }
            return value
        }
    }
}

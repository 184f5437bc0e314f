import KVM
import Synchronization

/// What a warm-pool VMM (`vireo-vmm pool`) sets up ahead of time, while it waits for a VM: /dev/kvm
/// and its supported CPUID and, in the VMM process proper (forked ahead as the jail supervisor's
/// child, WarmPoolMember), the KVM VM itself with its irqchip and PIT. None of it depends on the
/// VM's spec or snapshot, and the first `Machine` takes what is there. A KVM VM belongs to the
/// process that creates it, so `prepareVM` runs in the process that will run the guest.
public enum KVMPrewarm {
    private struct Prepared {
        var kvm: KVMSystem
        var supportedCPUID: [CPUIDEntry]
        var vm: VirtualMachine?
    }

    private static let opened = Mutex<Prepared?>(nil)

    /// Opens /dev/kvm and reads its CPUID now; a failure is left for the Machine to report.
    public static func prepare() {
        guard let host = try? Machine.openKVM(cpus: 1) else { return }
        opened.withLock { $0 = Prepared(kvm: host.kvm, supportedCPUID: host.supportedCPUID, vm: nil) }
    }

    /// Creates the VM, its irqchip and PIT (Machine.createBareVM) on what `prepare` opened; the
    /// kernel's waits these cost (SRCU grace periods, the PIT's worker thread) are then off the
    /// request's path. False when there is nothing opened or KVM refused (the Machine retries and
    /// reports).
    @discardableResult
    public static func prepareVM() -> Bool {
        opened.withLock { prepared in
            guard var value = prepared, value.vm == nil, let vm = try? Machine.createBareVM(value.kvm) else { return false }
            value.vm = vm
            prepared = value
            return true
        }
    }

    /// What `prepare` opened, once (a VM `prepareVM` made stays for `takeVM`).
    static func take() -> (kvm: KVMSystem, supportedCPUID: [CPUIDEntry])? {
        opened.withLock { value in
            guard let taken = value, !taken.supportedCPUID.isEmpty else { return nil }
            value = taken.vm.map { Prepared(kvm: taken.kvm, supportedCPUID: [], vm: $0) }
            return (taken.kvm, taken.supportedCPUID)
        }
    }

    /// The VM `prepareVM` created on `kvm`, once.
    static func takeVM(for kvm: KVMSystem) -> VirtualMachine? {
        opened.withLock { value in
            guard let vm = value?.vm, vm.system === kvm else { return nil }
            value = nil
            return vm
        }
    }
}

import KVM
import Memory
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What a warm-pool VMM (`vireo-vmm pool`) sets up ahead of time, while it waits for a VM: /dev/kvm
/// and its supported CPUID and, in the VMM process proper (forked ahead as the jail supervisor's
/// child, WarmPoolMember), the KVM VM itself with, given the guest RAM size the daemon expects, its
/// memory slots over reserved (inaccessible, unbacked) address ranges onto which the snapshot's
/// memory file is later mapped, its irqchip (no PIT: `restoreState` makes one for a snapshot that
/// saved one), and its vCPU 0 (CPUID and state come with the snapshot; KVM_CREATE_VCPU costs a
/// fifth of a millisecond on an emulated host). None of it depends on the snapshot, and the first
/// `Machine` takes what is there. A KVM VM belongs to the process that creates it, so `prepareVM`
/// runs in the process that will run the guest.
public enum KVMPrewarm {
    private struct Prepared {
        var kvm: KVMSystem
        var supportedCPUID: [CPUIDEntry]
        var vm: VirtualMachine?
        /// vCPU 0 of `vm`, made with it (nil when KVM refused: the Machine makes it).
        var vcpu0: VCPU?
        /// Address ranges registered as the VM's memory slots, in slot order; `claimed` once
        /// guest RAM was mapped over them.
        var reserved: [GuestMemoryRegion] = []
        var claimed = false
    }

    private static let opened = Mutex<Prepared?>(nil)

    /// Opens /dev/kvm and reads its CPUID now; a failure is left for the Machine to report.
    public static func prepare() {
        guard let host = try? Machine.openKVM(cpus: 1) else { return }
        opened.withLock { $0 = Prepared(kvm: host.kvm, supportedCPUID: host.supportedCPUID, vm: nil) }
    }

    /// Creates the VM on what `prepare` opened with, for `memoryBytes` of guest RAM
    /// (X86MemoryLayout), its memory slots registered over reserved ranges, then its irqchip (in
    /// that order: Machine.registerSlots) and its vCPU 0. False when there is nothing opened or KVM
    /// refused (the Machine then does it all on the request and reports).
    @discardableResult
    public static func prepareVM(memoryBytes: UInt64? = nil) -> Bool {
        opened.withLock { prepared in
            guard var value = prepared, value.vm == nil, let vm = try? Machine.createPreparedVM(value.kvm) else { return false }
            var reserved: [GuestMemoryRegion] = []
            if let memoryBytes, memoryBytes >= X86MemoryLayout.minimumRAM, memoryBytes <= X86MemoryLayout.maximumRAM,
               memoryBytes % 4096 == 0 {
                reserved = reserveSlots(vm, memoryBytes: memoryBytes)
            }
            do {
                try vm.createIRQChip()
            } catch {
                release(vm, reserved)
                return false
            }
            value.vm = vm
            value.reserved = reserved
            value.vcpu0 = try? vm.createVCPU(id: 0)
            prepared = value
            return true
        }
    }

    /// Reserves and registers one slot per RAM region; [] (nothing left behind) when any step fails.
    private static func reserveSlots(_ vm: VirtualMachine, memoryBytes: UInt64) -> [GuestMemoryRegion] {
        var regions: [GuestMemoryRegion] = []
        for (slot, layout) in X86MemoryLayout.regions(ramSize: memoryBytes).enumerated() {
            let pointer = mmap(nil, Int(layout.size), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
            guard let pointer, pointer != MAP_FAILED else { break }
            let region = GuestMemoryRegion(guestBase: layout.base, size: layout.size, host: pointer)
            do {
                try vm.setMemoryRegion(slot: UInt32(slot), guestAddress: layout.base, size: layout.size, host: pointer)
            } catch {
                munmap(pointer, Int(layout.size))
                break
            }
            regions.append(region)
        }
        if regions.count == X86MemoryLayout.regions(ramSize: memoryBytes).count { return regions }
        release(vm, regions)
        return []
    }

    /// Deletes the slots (size 0) and unmaps the ranges.
    private static func release(_ vm: VirtualMachine, _ regions: [GuestMemoryRegion]) {
        for (slot, region) in regions.enumerated() {
            try? vm.setMemoryRegion(slot: UInt32(slot), guestAddress: region.guestBase, size: 0, host: region.host)
            munmap(region.host, Int(region.size))
        }
    }

    /// What `prepare` opened, once (a VM `prepareVM` made stays for `takeVM`).
    static func take() -> (kvm: KVMSystem, supportedCPUID: [CPUIDEntry])? {
        opened.withLock { value in
            guard let taken = value, !taken.supportedCPUID.isEmpty else { return nil }
            if taken.vm == nil {
                value = nil
            } else {
                value?.supportedCPUID = []
            }
            return (taken.kvm, taken.supportedCPUID)
        }
    }

    /// The host addresses to map guest RAM at when `layout` (guest base, size per region) is the
    /// one whose slots are registered: the caller maps over them with MAP_FIXED. Nil otherwise.
    static func claimReservation(for layout: [(base: UInt64, size: UInt64)]) -> [UnsafeMutableRawPointer]? {
        opened.withLock { value -> [UnsafeMutableRawPointer]? in
            guard let reserved = value?.reserved, value?.claimed == false, reserved.count == layout.count,
                  zip(reserved, layout).allSatisfy({ $0.guestBase == $1.base && $0.size == $1.size }) else { return nil }
            value?.claimed = true
            return reserved.map(\.host)
        }
    }

    /// The VM `prepareVM` created on `kvm`, once, whether `memory` is already in its slots
    /// (mapped over the claimed reservation), and the vCPUs made with it (ids 0, 1, …). Unclaimed
    /// slots are deleted and their ranges unmapped.
    static func takeVM(for kvm: KVMSystem, memory: GuestMemory) -> (vm: VirtualMachine, slotsReady: Bool, vcpus: [VCPU])? {
        opened.withLock { value -> (vm: VirtualMachine, slotsReady: Bool, vcpus: [VCPU])? in
            guard let prepared = value, let vm = prepared.vm, vm.system === kvm else { return nil }
            value = nil
            let ready = prepared.claimed && prepared.reserved.count == memory.regions.count
                && zip(prepared.reserved, memory.regions).allSatisfy { $0.host == $1.host && $0.size == $1.size && $0.guestBase == $1.guestBase }
            if !ready && !prepared.claimed { release(vm, prepared.reserved) }
            return (vm, ready, prepared.vcpu0.map { [$0] } ?? [])
        }
    }
}

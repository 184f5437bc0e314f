internal import CKVM
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A KVM virtual machine: memory slots, in-kernel irqchip and PIT, interrupt lines, vCPUs.
public final class VirtualMachine: Sendable {
    public let fd: Int32
    public let system: KVMSystem
    private let pitCreated = Atomic<Bool>(false)

    init(fd: Int32, system: KVMSystem) {
        self.fd = fd
        self.system = system
    }

    deinit { close(fd) }

    /// Maps `size` bytes of host memory at `host` into the guest at `guestAddress` in `slot`.
    public func setMemoryRegion(slot: UInt32, guestAddress: UInt64, size: UInt64,
                                host: UnsafeMutableRawPointer, logDirtyPages: Bool = false) throws(KVMError) {
        let flags: UInt32 = logDirtyPages ? 1 : 0
        _ = try check(ckvm_set_user_memory_region(fd, slot, flags, guestAddress, size,
                                                  UInt64(UInt(bitPattern: host))), "KVM_SET_USER_MEMORY_REGION")
    }

    /// Places the three-page TSS region Intel VT-x needs for real mode (must not overlap RAM in use).
    public func setTSSAddress(_ address: UInt64) throws(KVMError) {
        _ = try check(ckvm_set_tss_addr(fd, UInt(address)), "KVM_SET_TSS_ADDR")
    }

    /// Places the one-page identity map VT-x needs for real mode.
    public func setIdentityMapAddress(_ address: UInt64) throws(KVMError) {
        _ = try check(ckvm_set_identity_map_addr(fd, address), "KVM_SET_IDENTITY_MAP_ADDR")
    }

    /// Creates the in-kernel PIC, IOAPIC and per-vCPU LAPICs.
    public func createIRQChip() throws(KVMError) {
        _ = try check(ckvm_create_irqchip(fd), "KVM_CREATE_IRQCHIP")
    }

    /// Creates the in-kernel i8254 PIT (speaker port left to user space).
    public func createPIT2() throws(KVMError) {
        _ = try check(ckvm_create_pit2(fd, UInt32(CKVM_PIT_SPEAKER_DUMMY)), "KVM_CREATE_PIT2")
        pitCreated.store(true, ordering: .releasing)
    }

    /// Whether this VM has the in-kernel PIT (its state is then part of a snapshot).
    public var hasPIT: Bool { pitCreated.load(ordering: .acquiring) }

    /// Drives GSI `irq` of the in-kernel irqchip high or low.
    public func setIRQLine(_ irq: UInt32, level: Bool) throws(KVMError) {
        _ = try check(ckvm_irq_line(fd, irq, level ? 1 : 0), "KVM_IRQ_LINE")
    }

    /// The guest's kvmclock value in nanoseconds (KVM_GET_CLOCK).
    public func clock() throws(KVMError) -> UInt64 {
        var data = kvm_clock_data()
        _ = try check(ckvm_get_clock(fd, &data), "KVM_GET_CLOCK")
        return data.clock
    }

    /// Sets the guest's kvmclock (KVM_SET_CLOCK), e.g. so a paused guest does not see the pause.
    public func setClock(_ nanoseconds: UInt64) throws(KVMError) {
        var data = kvm_clock_data()
        data.clock = nanoseconds
        _ = try check(ckvm_set_clock(fd, &data), "KVM_SET_CLOCK")
    }

    /// Creates vCPU `id` and maps its kvm_run area.
    public func createVCPU(id: UInt32) throws(KVMError) -> VCPU {
        let vcpufd = try check(ckvm_create_vcpu(fd, UInt(id)), "KVM_CREATE_VCPU")
        let mapping = mmap(nil, system.vcpuMmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, vcpufd, 0)
        guard let mapping, mapping != MAP_FAILED else {
            let error = errno
            close(vcpufd)
            throw .mapRun(errno: error)
        }
        return VCPU(id: id, fd: vcpufd, run: mapping, runSize: system.vcpuMmapSize)
    }
}

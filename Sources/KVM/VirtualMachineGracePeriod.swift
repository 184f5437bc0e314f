internal import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// KVM's SRCU grace periods, from user space.
///
/// KVM frees what it replaces on a VM's I/O buses (KVM_CREATE_IRQCHIP's devices, the PIT's,
/// every ioeventfd) after an SRCU grace period it does not wait for; the VM's teardown waits for
/// all of them (`srcu_barrier`), and so does the next memory-slot change. Left alone such a grace
/// period takes ~15 ms on an emulated host; an expedited one ~5 ms. Removing an ioeventfd is the
/// one VM ioctl that waits for an expedited grace period and changes nothing else.
extension VirtualMachine {
    /// An address no device decodes (the start of the MMIO hole) and a value no guest writes by
    /// chance: while registered, only an 8-byte write of exactly this value there is taken.
    public static let gracePeriodProbe: (address: UInt64, value: UInt64) = (0xC000_0000, 0x5652_454F_5352_4355)

    /// Blocks until the grace periods in flight on this VM have ended, by asking for an expedited
    /// one (an ioeventfd registered and removed). Blocks for a few milliseconds off-CPU.
    public func expediteGracePeriods() throws(KVMError) {
        let eventFD = try check(ckvm_eventfd(), "eventfd")
        defer { close(eventFD) }
        let probe = VirtualMachine.gracePeriodProbe
        try registerIOEventFD(eventFD: eventFD, address: probe.address, length: 8, datamatch: probe.value)
        try unregisterIOEventFD(eventFD: eventFD, address: probe.address, length: 8, datamatch: probe.value)
    }
}

internal import CKVM

/// irqfd and ioeventfd: interrupts and doorbells that bypass user space on the vCPU path.
///
/// The eventfds themselves belong to the caller (the VMM hands in a device's EventFD); KVM keeps a
/// reference to the file until it is unregistered or the VM is closed.
extension VirtualMachine {
    /// Makes every write to `eventFD` inject an edge on GSI `gsi` of the in-kernel irqchip.
    public func registerIRQFD(eventFD: Int32, gsi: UInt32) throws(KVMError) {
        _ = try check(ckvm_irqfd(fd, eventFD, gsi, 0), "KVM_IRQFD")
    }

    /// Detaches `eventFD` from GSI `gsi`.
    public func unregisterIRQFD(eventFD: Int32, gsi: UInt32) throws(KVMError) {
        _ = try check(ckvm_irqfd(fd, eventFD, gsi, UInt32(CKVM_IRQFD_FLAG_DEASSIGN)), "KVM_IRQFD(deassign)")
    }

    /// Makes a guest write of `length` bytes (1, 2, 4 or 8; 0 means any) at `address` signal `eventFD`
    /// inside KVM instead of exiting; with `datamatch` only writes of that value do. `pio` selects port I/O.
    public func registerIOEventFD(eventFD: Int32, address: UInt64, length: UInt32, datamatch: UInt64?,
                                  pio: Bool = false) throws(KVMError) {
        _ = try check(ckvm_ioeventfd(fd, eventFD, address, length, datamatch == nil ? 0 : 1, datamatch ?? 0,
                                     pio ? 1 : 0, 0), "KVM_IOEVENTFD")
    }

    /// Removes a registration made by `registerIOEventFD` (every argument must match it).
    public func unregisterIOEventFD(eventFD: Int32, address: UInt64, length: UInt32, datamatch: UInt64?,
                                    pio: Bool = false) throws(KVMError) {
        _ = try check(ckvm_ioeventfd(fd, eventFD, address, length, datamatch == nil ? 0 : 1, datamatch ?? 0,
                                     pio ? 1 : 0, 1), "KVM_IOEVENTFD(deassign)")
    }
}

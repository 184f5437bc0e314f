/// Why KVM_RUN returned, decoded from kvm_run.
///
/// Buffers point into the vCPU's kvm_run page and are valid only inside `VCPU.withExit`.
public enum VCPUExit {
    /// Port I/O: `data` holds `count * size` bytes (string I/O repeats), to fill for reads.
    case io(port: UInt16, size: Int, count: Int, isWrite: Bool, data: UnsafeMutableRawBufferPointer)
    /// MMIO: `data.count` is the access size; fill it for reads.
    case mmio(address: UInt64, isWrite: Bool, data: UnsafeMutableRawBufferPointer)
    /// The guest executed HLT (only seen without an in-kernel LAPIC).
    case halt
    /// Triple fault or other shutdown condition.
    case shutdown
    /// A PSCI/ACPI-style system event (type as KVM reports it).
    case systemEvent(type: UInt32)
    /// KVM's emulator failed; `instruction` holds the bytes it fetched (may be empty).
    case emulationFailure(instruction: UnsafeRawBufferPointer)
    /// Another internal error with its suberror and data words.
    case internalError(suberror: UInt32, data: [UInt64])
    /// VM entry failed with a hardware reason code.
    case failEntry(reason: UInt64)
    /// KVM_RUN was interrupted by a signal or immediate_exit.
    case interrupted
    /// Anything else.
    case other(reason: UInt32)
}

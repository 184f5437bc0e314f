internal import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// What `VCPU.run()` reports before the exit is decoded.
public enum RunResult: Sendable {
    /// KVM_RUN returned with an exit to decode with `withExit`.
    case exit
    /// A signal or immediate_exit interrupted KVM_RUN (EINTR).
    case interrupted
    /// An AP waiting for its SIPI (EAGAIN): try again.
    case again
}

/// One virtual CPU: registers, CPUID, MSRs, LAPIC, events and KVM_RUN.
///
/// Owned by one thread while running; `kick()` may be called from any thread.
/// @unchecked Sendable: The kvm_run page is read and written only by the thread running the vCPU; other threads only set `immediate_exit` (one byte KVM reads at entry, as it documents for this use) and send the kick signal.
public final class VCPU: @unchecked Sendable {
    public let id: UInt32
    public let fd: Int32
    private let run: UnsafeMutablePointer<kvm_run>
    private let runSize: Int

    init(id: UInt32, fd: Int32, run: UnsafeMutableRawPointer, runSize: Int) {
        self.id = id
        self.fd = fd
        self.run = run.assumingMemoryBound(to: kvm_run.self)
        self.runSize = runSize
    }

    deinit {
        munmap(run, runSize)
        close(fd)
    }

    // MARK: Running

    /// Enters the guest until the next exit.
    @inline(__always)
    public func runOnce() throws(KVMError) -> RunResult {
        let result = ckvm_run(fd)
        if result >= 0 { return .exit }
        if result == -EINTR { return .interrupted }
        if result == -EAGAIN { return .again }
        throw .ioctl("KVM_RUN", errno: -result)
    }

    /// Sets or clears kvm_run.immediate_exit: when set, KVM_RUN returns EINTR at once.
    public func setImmediateExit(_ value: Bool) {
        ckvm_run_set_immediate_exit(run, value ? 1 : 0)
    }

    /// Decodes the current exit and hands it to `body`; no pointer into kvm_run escapes.
    @inline(__always)
    public func withExit<R>(_ body: (VCPUExit) throws -> R) rethrows -> R {
        let reason = ckvm_run_exit_reason(run)
        switch Int(reason) {
        case Int(CKVM_EXIT_IO):
            let size = Int(ckvm_run_io_size(run))
            let count = Int(ckvm_run_io_count(run))
            let offset = Int(ckvm_run_io_data_offset(run))
            let length = size * count
            // A corrupt offset would be a kernel bug, but never index outside the mapping.
            guard offset >= 0, length >= 0, offset <= runSize - length else { return try body(.other(reason: reason)) }
            let data = UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(run) + offset, count: length)
            return try body(.io(port: ckvm_run_io_port(run), size: size, count: count,
                                isWrite: ckvm_run_io_direction(run) == UInt8(CKVM_IO_OUT), data: data))
        case Int(CKVM_EXIT_MMIO):
            let length = min(Int(ckvm_run_mmio_len(run)), 8)
            let data = UnsafeMutableRawBufferPointer(start: ckvm_run_mmio_data(run), count: length)
            return try body(.mmio(address: ckvm_run_mmio_phys_addr(run), isWrite: ckvm_run_mmio_is_write(run) != 0,
                                  data: data))
        case Int(CKVM_EXIT_HLT):
            return try body(.halt)
        case Int(CKVM_EXIT_SHUTDOWN):
            return try body(.shutdown)
        case Int(CKVM_EXIT_SYSTEM_EVENT):
            return try body(.systemEvent(type: ckvm_run_system_event_type(run)))
        case Int(CKVM_EXIT_FAIL_ENTRY):
            return try body(.failEntry(reason: ckvm_run_fail_entry_reason(run)))
        case Int(CKVM_EXIT_INTR):
            return try body(.interrupted)
        case Int(CKVM_EXIT_INTERNAL_ERROR):
            let suberror = ckvm_run_internal_suberror(run)
            if suberror == UInt32(CKVM_INTERNAL_ERROR_EMULATION) {
                var bytes = UnsafeRawBufferPointer(start: nil, count: 0)
                if ckvm_run_emulation_flags(run) & UInt64(CKVM_EMULATION_FLAG_INSTRUCTION_BYTES) != 0 {
                    let size = min(Int(ckvm_run_emulation_insn_size(run)), 15)
                    bytes = UnsafeRawBufferPointer(start: ckvm_run_emulation_insn_bytes(run), count: size)
                }
                return try body(.emulationFailure(instruction: bytes))
            }
            let count = min(Int(ckvm_run_internal_ndata(run)), 16)
            let data = (0..<count).map { ckvm_run_internal_data(run, UInt32($0)) }
            return try body(.internalError(suberror: suberror, data: data))
        default:
            return try body(.other(reason: reason))
        }
    }

    // MARK: Registers

    public func registers() throws(KVMError) -> Registers {
        var raw = kvm_regs()
        _ = try check(ckvm_get_regs(fd, &raw), "KVM_GET_REGS")
        return Registers(raw)
    }

    public func setRegisters(_ registers: Registers) throws(KVMError) {
        var raw = registers.raw
        _ = try check(ckvm_set_regs(fd, &raw), "KVM_SET_REGS")
    }

    public func specialRegisters() throws(KVMError) -> SpecialRegisters {
        var raw = kvm_sregs()
        _ = try check(ckvm_get_sregs(fd, &raw), "KVM_GET_SREGS")
        return SpecialRegisters(raw)
    }

    public func setSpecialRegisters(_ sregs: SpecialRegisters) throws(KVMError) {
        var raw = sregs.raw
        _ = try check(ckvm_set_sregs(fd, &raw), "KVM_SET_SREGS")
    }

    /// Resets the x87/SSE state to power-on defaults (FCW 0x37F, MXCSR 0x1F80).
    public func resetFPU() throws(KVMError) {
        var fpu = kvm_fpu()
        fpu.fcw = 0x37f
        fpu.mxcsr = 0x1f80
        _ = try check(ckvm_set_fpu(fd, &fpu), "KVM_SET_FPU")
    }

    /// Sets the CPUID table the guest sees.
    public func setCPUID(_ entries: [CPUIDEntry]) throws(KVMError) {
        let container = UnsafeMutablePointer<ckvm_cpuid>.allocate(capacity: 1)
        defer { container.deallocate() }
        memset(container, 0, MemoryLayout<ckvm_cpuid>.size)
        let count = min(entries.count, Int(CKVM_MAX_CPUID_ENTRIES))
        container.pointee.nent = UInt32(count)
        withUnsafeMutablePointer(to: &container.pointee.entries) { tuple in
            tuple.withMemoryRebound(to: kvm_cpuid_entry2.self, capacity: Int(CKVM_MAX_CPUID_ENTRIES)) { out in
                for i in 0..<count {
                    let e = entries[i]
                    out[i].function = e.function; out[i].index = e.index; out[i].flags = e.flags
                    out[i].eax = e.eax; out[i].ebx = e.ebx; out[i].ecx = e.ecx; out[i].edx = e.edx
                }
            }
        }
        _ = try check(ckvm_set_cpuid2(fd, container), "KVM_SET_CPUID2")
    }

    /// Writes model-specific registers; throws unless KVM accepted all of them.
    public func setMSRs(_ msrs: [(index: UInt32, value: UInt64)]) throws(KVMError) {
        let written = try setMSRsAccepted(msrs)
        if written != min(msrs.count, Int(CKVM_MAX_MSR_ENTRIES)) {
            throw .ioctl("KVM_SET_MSRS (MSR 0x\(String(msrs[written].index, radix: 16)) refused)", errno: EINVAL)
        }
    }

    /// Writes model-specific registers in one KVM_SET_MSRS; returns how many KVM accepted (it stops
    /// at the first one it refuses).
    public func setMSRsAccepted(_ msrs: [(index: UInt32, value: UInt64)]) throws(KVMError) -> Int {
        let container = UnsafeMutablePointer<ckvm_msrs>.allocate(capacity: 1)
        defer { container.deallocate() }
        memset(container, 0, MemoryLayout<ckvm_msrs>.size)
        let count = min(msrs.count, Int(CKVM_MAX_MSR_ENTRIES))
        container.pointee.nmsrs = UInt32(count)
        withUnsafeMutablePointer(to: &container.pointee.entries) { tuple in
            tuple.withMemoryRebound(to: kvm_msr_entry.self, capacity: Int(CKVM_MAX_MSR_ENTRIES)) { out in
                for i in 0..<count { out[i].index = msrs[i].index; out[i].data = msrs[i].value }
            }
        }
        return Int(try check(ckvm_set_msrs(fd, container), "KVM_SET_MSRS"))
    }

    /// Reads model-specific registers; entries KVM does not know are omitted.
    public func msrs(_ indices: [UInt32]) throws(KVMError) -> [(index: UInt32, value: UInt64)] {
        let container = UnsafeMutablePointer<ckvm_msrs>.allocate(capacity: 1)
        defer { container.deallocate() }
        memset(container, 0, MemoryLayout<ckvm_msrs>.size)
        let count = min(indices.count, Int(CKVM_MAX_MSR_ENTRIES))
        container.pointee.nmsrs = UInt32(count)
        return try withUnsafeMutablePointer(to: &container.pointee.entries) { (tuple) throws(KVMError) in
            try tuple.withMemoryRebound(to: kvm_msr_entry.self, capacity: Int(CKVM_MAX_MSR_ENTRIES)) { (entries) throws(KVMError) in
                for i in 0..<count { entries[i].index = indices[i] }
                let read = Int(try check(ckvm_get_msrs(fd, container), "KVM_GET_MSRS"))
                return (0..<read).map { (entries[$0].index, entries[$0].data) }
            }
        }
    }

    /// Programs LINT0 as ExtINT and LINT1 as NMI, as a PC's BIOS does, so the PIC and NMIs reach the CPU.
    public func configureLocalInterrupts() throws(KVMError) {
        var lapic = kvm_lapic_state()
        _ = try check(ckvm_get_lapic(fd, &lapic), "KVM_GET_LAPIC")
        withUnsafeMutableBytes(of: &lapic.regs) { regs in
            let lvtLINT0 = 0x350, lvtLINT1 = 0x360
            func update(_ offset: Int, mode: UInt32) {
                var value = regs.load(fromByteOffset: offset, as: UInt32.self)
                value = (value & ~0x700 & ~0x10000) | (mode << 8)  // delivery mode, unmasked
                regs.storeBytes(of: value, toByteOffset: offset, as: UInt32.self)
            }
            update(lvtLINT0, mode: 7)  // ExtINT
            update(lvtLINT1, mode: 4)  // NMI
        }
        _ = try check(ckvm_set_lapic(fd, &lapic), "KVM_SET_LAPIC")
    }

    /// Injects an exception into the guest at the next entry.
    public func injectException(_ exception: PendingException) throws(KVMError) {
        _ = try check(ckvm_inject_exception(fd, exception.vector, exception.errorCode == nil ? 0 : 1,
                                            exception.errorCode ?? 0), "KVM_SET_VCPU_EVENTS")
    }

    /// The vCPU's multiprocessing state (KVM_MP_STATE_*).
    public func mpState() throws(KVMError) -> UInt32 {
        var state = kvm_mp_state()
        _ = try check(ckvm_get_mp_state(fd, &state), "KVM_GET_MP_STATE")
        return state.mp_state
    }

    /// Guest TSC frequency in kHz, when KVM reports it.
    public func tscKHz() -> UInt32? {
        let value = ckvm_get_tsc_khz(fd)
        return value > 0 ? UInt32(value) : nil
    }
}

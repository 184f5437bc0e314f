internal import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// The saved state of one vCPU: raw KVM structs (same host, same layouts) plus MSRs.
public struct VCPUState: Sendable, Equatable {
    /// Raw kvm_regs, kvm_sregs, kvm_fpu, kvm_xsave, kvm_xcrs, kvm_lapic_state, kvm_vcpu_events,
    /// kvm_mp_state, kvm_debugregs, in that order; an empty blob means KVM could not provide it.
    public var blobs: [[UInt8]]
    public var msrs: [MSRValue]

    public init(blobs: [[UInt8]], msrs: [MSRValue]) { self.blobs = blobs; self.msrs = msrs }
}

/// One model-specific register value.
public struct MSRValue: Sendable, Equatable {
    public var index: UInt32
    public var value: UInt64
    public init(index: UInt32, value: UInt64) { self.index = index; self.value = value }
}

/// The saved in-kernel VM state: PIC master/slave, IOAPIC, PIT, kvmclock.
public struct VMState: Sendable, Equatable {
    public var blobs: [[UInt8]]
    public init(blobs: [[UInt8]]) { self.blobs = blobs }
}

/// Names for VCPUState.blobs indices, in order.
public enum VCPUStateKind: Int, CaseIterable, Sendable {
    case regs, sregs, fpu, xsave, xcrs, lapic, events, mpState, debugRegisters

    public var size: Int { Int(ckvm_vcpu_state_size(Int32(rawValue))) }
    var name: StaticString {
        switch self {
        case .regs: return "KVM_GET/SET_REGS"
        case .sregs: return "KVM_GET/SET_SREGS"
        case .fpu: return "KVM_GET/SET_FPU"
        case .xsave: return "KVM_GET/SET_XSAVE"
        case .xcrs: return "KVM_GET/SET_XCRS"
        case .lapic: return "KVM_GET/SET_LAPIC"
        case .events: return "KVM_GET/SET_VCPU_EVENTS"
        case .mpState: return "KVM_GET/SET_MP_STATE"
        case .debugRegisters: return "KVM_GET/SET_DEBUGREGS"
        }
    }
    /// State some hosts may not offer; missing ones are skipped rather than fatal.
    var isOptional: Bool { self == .xsave || self == .xcrs || self == .debugRegisters }
}

/// Names for VMState.blobs indices, in order.
public enum VMStateKind: Int, CaseIterable, Sendable {
    case picMaster, picSlave, ioapic, pit, clock

    public var size: Int { Int(ckvm_vm_state_size(Int32(rawValue))) }
    var name: StaticString {
        switch self {
        case .picMaster, .picSlave, .ioapic: return "KVM_GET/SET_IRQCHIP"
        case .pit: return "KVM_GET/SET_PIT2"
        case .clock: return "KVM_GET/SET_CLOCK"
        }
    }
}

extension KVMSystem {
    /// MSR indices KVM saves and restores for a guest (KVM_GET_MSR_INDEX_LIST).
    public func msrIndexList() throws(KVMError) -> [UInt32] {
        let list = UnsafeMutablePointer<ckvm_msr_list>.allocate(capacity: 1)
        defer { list.deallocate() }
        _ = try check(ckvm_get_msr_index_list(fd, list), "KVM_GET_MSR_INDEX_LIST")
        let count = Int(list.pointee.nmsrs)
        return withUnsafeBytes(of: &list.pointee.indices) { raw in
            (0..<min(count, 512)).map { raw.load(fromByteOffset: $0 * 4, as: UInt32.self) }
        }
    }
}

extension VCPU {
    /// Reads the vCPU's full state; call only while it is outside KVM_RUN (paused).
    public func saveState(msrIndices: [UInt32]) throws(KVMError) -> VCPUState {
        var blobs: [[UInt8]] = []
        for kind in VCPUStateKind.allCases {
            var blob = [UInt8](repeating: 0, count: kind.size)
            let result = blob.withUnsafeMutableBytes { ckvm_vcpu_get_state(fd, Int32(kind.rawValue), $0.baseAddress) }
            if result < 0 {
                if kind.isOptional { blobs.append([]); continue }
                throw .ioctl("\(kind.name)", errno: -result)
            }
            blobs.append(blob)
        }
        // KVM_GET_MSRS stops at the first MSR it cannot read: skip that one and go on.
        var values: [MSRValue] = []
        var remaining = msrIndices[...]
        while !remaining.isEmpty {
            let batch = Array(remaining.prefix(64))
            let read = try msrs(batch)
            values += read.map { MSRValue(index: $0.index, value: $0.value) }
            remaining = remaining.dropFirst(max(read.count + (read.count < batch.count ? 1 : 0), 1))
        }
        return VCPUState(blobs: blobs, msrs: values)
    }

    /// Writes a saved state back (CPUID must already be set). Order matters: special registers
    /// before the LAPIC (APIC base), events last.
    public func restoreState(_ state: VCPUState) throws(KVMError) {
        guard state.blobs.count == VCPUStateKind.allCases.count else {
            throw .ioctl("restore (vCPU state has \(state.blobs.count) parts)", errno: EINVAL)
        }
        let order: [VCPUStateKind] = [.sregs, .regs, .fpu, .xsave, .xcrs, .lapic, .debugRegisters, .mpState]
        for kind in order { try restore(kind, state.blobs[kind.rawValue]) }
        // 64 at a time; KVM stops at the first it refuses (a few are read-only): skip that one, go on.
        var remaining = state.msrs[...]
        while !remaining.isEmpty {
            let batch = remaining.prefix(64).map { (index: $0.index, value: $0.value) }
            let accepted = (try? setMSRsAccepted(batch)) ?? 0
            remaining = remaining.dropFirst(accepted < batch.count ? accepted + 1 : accepted)
        }
        try restore(.events, state.blobs[VCPUStateKind.events.rawValue])
    }

    private func restore(_ kind: VCPUStateKind, _ blob: [UInt8]) throws(KVMError) {
        if blob.isEmpty && kind.isOptional { return }
        guard blob.count == kind.size else {
            throw .ioctl("\(kind.name) (saved size \(blob.count), this host's \(kind.size))", errno: EINVAL)
        }
        var copy = blob
        let result = copy.withUnsafeMutableBytes { ckvm_vcpu_set_state(fd, Int32(kind.rawValue), $0.baseAddress) }
        if result < 0 { throw .ioctl("\(kind.name)", errno: -result) }
    }
}

extension VirtualMachine {
    /// Reads the in-kernel irqchip, PIT and clock state.
    public func saveState() throws(KVMError) -> VMState {
        var blobs: [[UInt8]] = []
        for kind in VMStateKind.allCases {
            // A VM without the PIT saves none: an empty blob, as for a vCPU's optional parts.
            if kind == .pit && !hasPIT { blobs.append([]); continue }
            var blob = [UInt8](repeating: 0, count: kind.size)
            let result = blob.withUnsafeMutableBytes { ckvm_vm_get_state(fd, Int32(kind.rawValue), $0.baseAddress) }
            if result < 0 { throw .ioctl("\(kind.name)", errno: -result) }
            blobs.append(blob)
        }
        return VMState(blobs: blobs)
    }

    /// Writes saved irqchip, PIT and clock state back. The snapshot decides whether there is a PIT:
    /// one is created here when it saved PIT state and this VM has none yet, and a snapshot without
    /// one leaves the VM without it.
    public func restoreState(_ state: VMState) throws(KVMError) {
        guard state.blobs.count == VMStateKind.allCases.count else {
            throw .ioctl("restore (VM state has \(state.blobs.count) parts)", errno: EINVAL)
        }
        if state.blobs[VMStateKind.pit.rawValue].isEmpty {
            guard !hasPIT else { throw .ioctl("restore (the snapshot has no PIT state, the VM has a PIT)", errno: EINVAL) }
        } else if !hasPIT {
            try createPIT2()
        }
        for kind in VMStateKind.allCases {
            if kind == .pit && state.blobs[kind.rawValue].isEmpty { continue }
            var blob = state.blobs[kind.rawValue]
            guard blob.count == kind.size else {
                throw .ioctl("\(kind.name) (saved size \(blob.count), this host's \(kind.size))", errno: EINVAL)
            }
            let result = blob.withUnsafeMutableBytes { ckvm_vm_set_state(fd, Int32(kind.rawValue), $0.baseAddress) }
            if result < 0 { throw .ioctl("\(kind.name)", errno: -result) }
        }
    }
}

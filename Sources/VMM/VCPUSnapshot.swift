import KVM

/// Where one vCPU stood when the VM stopped (for diagnostics such as a stuck AP).
public struct VCPUSnapshot: Sendable, CustomStringConvertible {
    public let id: UInt32
    public let mpState: UInt32?
    public let rip: UInt64?
    public let mode: String

    public var description: String {
        let states = [0: "runnable", 1: "uninitialized", 2: "init-received", 3: "halted", 4: "sipi-received"]
        let state = mpState.map { states[Int($0)] ?? "state \($0)" } ?? "unknown"
        let ripText = rip.map { "0x" + String($0, radix: 16) } ?? "?"
        return "vCPU \(id): \(state), rip \(ripText), \(mode)"
    }
}

extension Machine {
    /// Reads every vCPU's state; call only after `run()` returned (no vCPU thread is inside KVM_RUN).
    public func vcpuSnapshots() -> [VCPUSnapshot] {
        vcpus.map { vcpu in
            if stuckVCPUs.contains(vcpu.id) {
                // Its thread still holds the vCPU inside KVM_RUN: any vCPU ioctl would block.
                return VCPUSnapshot(id: vcpu.id, mpState: nil, rip: nil, mode: "still inside KVM_RUN")
            }
            let special = try? vcpu.specialRegisters()
            let mode: String
            if let special {
                if special.cr0 & 1 == 0 { mode = "real mode" }
                else if special.isLongMode64 { mode = "64-bit mode, CPL \(special.cpl)" }
                else { mode = "protected mode, CPL \(special.cpl)" }
            } else {
                mode = "mode unknown"
            }
            return VCPUSnapshot(id: vcpu.id, mpState: try? vcpu.mpState(), rip: try? vcpu.registers().rip, mode: mode)
        }
    }
}

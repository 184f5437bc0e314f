import Devices
import KVM
import Memory
import X86

/// The exit loop of one vCPU thread: run, decode the exit, dispatch it to a bus or the fallback.
/// @unchecked Sendable: `fetchBuffer` is used only by the runner's own vCPU thread; the counters other threads read are atomics.
final class VCPURunner: @unchecked Sendable {
    let vcpu: VCPU
    private let portBus: Bus
    private let mmioBus: Bus
    private let memory: GuestMemory
    private let control: MachineControl
    let counters = ExitCounters()
    var statistics: ExitStatistics { counters.snapshot }
    /// Set when KVM's exit gave no instruction bytes and we fetched them from guest memory.
    private var fetchBuffer = [UInt8](repeating: 0, count: 15)

    init(vcpu: VCPU, portBus: Bus, mmioBus: Bus, memory: GuestMemory, control: MachineControl) {
        self.vcpu = vcpu
        self.portBus = portBus
        self.mmioBus = mmioBus
        self.memory = memory
        self.control = control
    }

    /// Runs until the machine stops; records a stop reason for guest-caused ends and errors.
    func run() {
        let isBoot = vcpu.id == 0
        if isBoot { Timeline.record(Timeline.firstEntry) }
        while !control.isStopping {
            let result: RunResult
            do {
                result = try vcpu.runOnce()
                if isBoot { Timeline.record(Timeline.firstExit) }
            } catch {
                control.stop(.error("vCPU \(vcpu.id): \(error)"))
                return
            }
            switch result {
            case .interrupted, .again:
                counters.interrupted.add(1, ordering: .relaxed)
                if let profiler = GuestProfiler.shared { profiler.sample(vcpu) }
                if control.isPausing && !control.isStopping && !TestHooks.vcpuRefusesToPark(vcpu.id) {
                    control.pauseGate.pass()
                }
                // Clear the kick only after checking the flags: a stop sets its flag before kicking.
                vcpu.setImmediateExit(false)
                continue
            case .exit:
                if let reason = vcpu.withExit({ handle($0) }) {
                    control.stop(reason)
                    return
                }
            }
        }
    }

    /// Handles one exit; returns a stop reason when the VM must end.
    @inline(__always)
    private func handle(_ exit: VCPUExit) -> StopReason? {
        switch exit {
        case let .io(port, size, count, isWrite, data):
            counters.io.add(1, ordering: .relaxed)
            for index in 0..<count {
                let slice = UnsafeMutableRawBufferPointer(rebasing: data[(index * size)..<((index + 1) * size)])
                if isWrite {
                    portBus.write(address: UInt64(port), from: UnsafeRawBufferPointer(slice))
                } else {
                    portBus.read(address: UInt64(port), into: slice)
                }
            }
            return nil
        case let .mmio(address, isWrite, data):
            counters.mmio.add(1, ordering: .relaxed)
            if isWrite {
                mmioBus.write(address: address, from: UnsafeRawBufferPointer(data))
            } else {
                mmioBus.read(address: address, into: data)
            }
            return nil
        case .halt:
            counters.other.add(1, ordering: .relaxed)
            return nil
        case .shutdown:
            return .tripleFault
        case let .systemEvent(type):
            // KVM_SYSTEM_EVENT_SHUTDOWN = 1, RESET = 2, CRASH = 3.
            switch type {
            case 1: return .guestPowerOff
            case 2: return .guestReset
            default: return .error("vCPU \(vcpu.id): guest crash event (system event \(type))")
            }
        case let .emulationFailure(instruction):
            return emulate(instruction)
        case let .internalError(suberror, data):
            let words = data.map { "0x" + String($0, radix: 16) }.joined(separator: " ")
            return .error("vCPU \(vcpu.id): KVM internal error (suberror \(suberror)) \(words)")
        case let .failEntry(reason):
            return .error("vCPU \(vcpu.id): VM entry failed (hardware reason 0x\(String(reason, radix: 16)))")
        case .interrupted:
            counters.interrupted.add(1, ordering: .relaxed)
            return nil
        case let .other(reason):
            return .error("vCPU \(vcpu.id): unexpected KVM exit reason \(reason)")
        }
    }

    /// The trap-and-emulate fallback for instructions the host's KVM cannot emulate.
    private func emulate(_ reported: UnsafeRawBufferPointer) -> StopReason? {
        var registers: Registers
        let special: SpecialRegisters
        do {
            registers = try vcpu.registers()
            special = try vcpu.specialRegisters()
        } catch {
            return .error("vCPU \(vcpu.id): \(error)")
        }
        let outcome: FallbackOutcome
        if reported.count > 0 {
            outcome = InstructionFallback.emulate(reported, registers: &registers, special: special, memory: memory)
        } else {
            let fetched = fetchInstruction(at: registers.rip, special: special)
            outcome = fetchBuffer.withUnsafeBytes { bytes in
                InstructionFallback.emulate(UnsafeRawBufferPointer(rebasing: bytes[0..<fetched]),
                                            registers: &registers, special: special, memory: memory)
            }
        }
        do {
            switch outcome {
            case .emulated:
                counters.emulated.add(1, ordering: .relaxed)
                try vcpu.setRegisters(registers)
            case let .inject(exception, faultAddress):
                counters.injected.add(1, ordering: .relaxed)
                try vcpu.setRegisters(registers)
                if let faultAddress {
                    var updated = special
                    updated.cr2 = faultAddress
                    try vcpu.setSpecialRegisters(updated)
                }
                try vcpu.injectException(exception)
            case let .unsupported(failure):
                return .error("vCPU \(vcpu.id): \(failure)")
            }
        } catch {
            return .error("vCPU \(vcpu.id): \(error)")
        }
        return nil
    }

    /// Copies up to 15 instruction bytes at `rip` through the guest's page tables; returns how many.
    private func fetchInstruction(at rip: UInt64, special: SpecialRegisters) -> Int {
        let linear = special.isLongMode64 ? rip : (special.cs.base &+ rip) & 0xFFFF_FFFF
        var count = 0
        while count < 15 {
            guard case let .success(physical) = PageWalker.translate(linear &+ UInt64(count), access: .fetch,
                                                                      special: special, memory: memory),
                  let byte = try? memory.read(UInt8.self, at: physical) else { break }
            fetchBuffer[count] = byte
            count += 1
        }
        return count
    }
}

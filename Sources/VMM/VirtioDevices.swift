import Devices
import KVM
import Memory

/// The VM's virtio-mmio devices: each gets a 4 KiB window in the MMIO hole, a GSI, an irqfd for
/// its interrupt, an ioeventfd per queue doorbell, a worker thread, and a `virtio_mmio.device=`
/// entry on the guest's command line (Linux then finds it without ACPI or a device tree).
/// @unchecked Sendable: Slots, startups and cleanups are appended while the machine is built and read by start/stop on the main thread; a worker only ever sees its own slot.
final class VirtioDevices: @unchecked Sendable {
    /// One device in place.
    struct Slot {
        let name: String
        let base: UInt64
        let gsi: UInt32
        let transport: VirtioMMIOTransport
        let interrupt: EventFDInterrupt
        let device: any VirtioDevice
    }

    /// ISA IRQs free for virtio: 4 is COM1, 1 the i8042, 8 the RTC, 0/2 the timer and cascade, 3 COM2.
    static let gsis: [UInt32] = [5, 6, 7, 9, 10, 11, 12, 13, 14, 15]  // VMConfig.virtioSlots of them

    private let memory: GuestMemory
    private(set) var slots: [Slot] = []
    /// Run once after the workers stopped: backends' child processes, socket files.
    private var cleanups: [() -> Void] = []

    init(memory: GuestMemory) { self.memory = memory }

    /// Adds a device at the next window and GSI.
    func add(_ device: any VirtioDevice, name: String) throws(VMMError) {
        guard slots.count < VirtioDevices.gsis.count else {
            throw .invalidConfiguration("too many virtio devices: at most \(VirtioDevices.gsis.count)")
        }
        let base = X86MemoryLayout.virtioMMIOBase + UInt64(slots.count) * X86MemoryLayout.virtioMMIOStride
        do {
            let interrupt = try EventFDInterrupt()
            let transport = try VirtioMMIOTransport(device: device, memory: memory, interrupt: interrupt, name: name)
            slots.append(Slot(name: name, base: base, gsi: VirtioDevices.gsis[slots.count], transport: transport,
                              interrupt: interrupt, device: device))
        } catch {
            throw .invalidConfiguration("\(name): \(error)")
        }
    }

    /// Puts every device on the MMIO bus and wires its interrupt and doorbells to KVM.
    func register(on bus: Bus, vm: VirtualMachine) throws(VMMError) {
        for slot in slots {
            do {
                try bus.insert(slot.transport, base: slot.base, length: VirtioMMIOTransport.windowSize, name: slot.name)
            } catch {
                throw .invalidConfiguration("device layout: \(error)")
            }
            do {
                try vm.registerIRQFD(eventFD: slot.interrupt.eventFD.fd, gsi: slot.gsi)
                for (index, notifier) in slot.transport.queueNotifiers.enumerated() {
                    try vm.registerIOEventFD(eventFD: notifier.fd, address: slot.base + VirtioMMIOTransport.queueNotifyOffset,
                                             length: 4, datamatch: UInt64(index))
                }
            } catch {
                throw .kvm("\(slot.name): \(error)")
            }
        }
    }

    /// `virtio_mmio.device=4K@0xd0000000:5 …` for the guest kernel.
    var commandLineArguments: [String] {
        slots.map { "virtio_mmio.device=4K@0x\(String($0.base, radix: 16)):\($0.gsi)" }
    }

    /// Starts every device's worker; each enters its role under `isolation` first.
    func startWorkers(isolation: IsolationPlan?) throws(VMMError) {
        let pending = startups
        startups = []
        for startup in pending { startup() }
        for slot in slots {
            do {
                try slot.transport.startWorker { name in ThreadRole.device(name).enter(under: isolation) }
            } catch {
                throw .invalidConfiguration("\(slot.name): cannot start its worker: \(error)")
            }
        }
    }

    func stopWorkers() {
        for slot in slots { slot.transport.stopWorker() }
        let pending = cleanups
        cleanups = []
        for cleanup in pending.reversed() { cleanup() }
    }

    /// Pauses every device (each returns once its request in progress finished).
    func pauseDevices() {
        for slot in slots { slot.transport.pauseDevice() }
    }

    /// Resumes every device; each worker services what arrived meanwhile.
    func resumeDevices() {
        for slot in slots { slot.transport.resumeDevice() }
    }

    /// Each slot's device, as recorded in a snapshot.
    var identities: [VirtioSlotIdentity] { slots.map { VirtioSlotIdentity(slotName: $0.name, device: $0.device) } }

    /// Threads the devices need besides their workers, started with them (after isolation is in place).
    private var startups: [() -> Void] = []
    func addStartup(_ body: @escaping () -> Void) { startups.append(body) }

    /// Registers work for `stopWorkers` (e.g. stopping passt, removing a socket file).
    func addCleanup(_ body: @escaping () -> Void) { cleanups.append(body) }

    /// Child processes the devices run (passt), for the seccomp filter.
    private(set) var helperProcesses: [Int32] = []
    func addHelperProcess(_ pid: Int32) { helperProcesses.append(pid) }
}

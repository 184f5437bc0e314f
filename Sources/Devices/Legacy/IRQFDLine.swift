import Synchronization

/// An edge-triggered (ISA) interrupt line delivered through an eventfd that the VMM registers with
/// KVM as an irqfd: a rising edge is one eventfd write (KVM pulses the pin), a falling edge costs
/// nothing — no KVM_IRQ_LINE ioctl and no lock per change. Only for pins the guest was told are
/// edge-triggered (the MP table's ISA IRQs).
public final class IRQFDLine: InterruptLine, @unchecked Sendable {
    /// Register `eventFD.fd` with `VirtualMachine.registerIRQFD(eventFD:gsi:)`.
    public let eventFD: EventFD
    private let level = Atomic<Bool>(false)

    public init() throws(EventFDError) { eventFD = try EventFD() }

    public func setLevel(_ high: Bool) {
        if level.exchange(high, ordering: .relaxed) == false && high { eventFD.signal() }
    }
}

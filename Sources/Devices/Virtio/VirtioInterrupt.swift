/// How a virtio transport tells the guest its InterruptStatus changed; the VMM picks the wiring.
public protocol VirtioInterrupt: AnyObject, Sendable {
    /// InterruptStatus is now `pending`; `raised` when the device set bits (deliver an interrupt),
    /// false when the driver acknowledged bits or reset the device.
    func interruptStatusChanged(pending: UInt32, raised: Bool)
}

/// Edge delivery through an eventfd the VMM registers with KVM as an irqfd (no ioctl per interrupt).
public final class EventFDInterrupt: VirtioInterrupt {
    /// Register `eventFD.fd` with `VirtualMachine.registerIRQFD(eventFD:gsi:)`.
    public let eventFD: EventFD

    public init() throws(EventFDError) { eventFD = try EventFD() }

    public func interruptStatusChanged(pending: UInt32, raised: Bool) {
        // Every raise is an edge: the driver's handler reads and acks InterruptStatus itself.
        if raised { eventFD.signal() }
    }
}

/// Level delivery on an `InterruptLine`: high while any InterruptStatus bit is set.
public final class LevelInterrupt: VirtioInterrupt {
    private let line: any InterruptLine

    public init(line: any InterruptLine) { self.line = line }

    public func interruptStatusChanged(pending: UInt32, raised: Bool) { line.setLevel(pending != 0) }
}

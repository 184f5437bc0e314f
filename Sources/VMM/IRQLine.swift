import Devices
import KVM
import Synchronization

/// An ISA interrupt line wired to the in-kernel irqchip through KVM_IRQ_LINE.
///
/// Only level changes reach KVM, so a device may call `setLevel` after every register access.
final class IRQLine: InterruptLine {
    private let vm: VirtualMachine
    private let gsi: UInt32
    private let level = Mutex(false)

    init(vm: VirtualMachine, gsi: UInt32) {
        self.vm = vm
        self.gsi = gsi
    }

    func setLevel(_ high: Bool) {
        level.withLock { current in
            guard current != high else { return }
            current = high
            // An irqchip failure here would be a host bug; the guest only loses an interrupt.
            try? vm.setIRQLine(gsi, level: high)
        }
    }
}

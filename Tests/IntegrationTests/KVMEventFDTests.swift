import Devices
import KVM
import Testing

/// irqfd and ioeventfd registration on the real /dev/kvm, as the VMM wires virtio-mmio devices.
@Suite(.enabled { try TestEnvironment.available("KVMEventFDTests", .kvm) })
struct KVMEventFDTests {
    @Test func irqfdRegistersOncePerGSI() throws {
        let vm = try KVMSystem().createVM()
        try vm.createIRQChip()
        let interrupt = try EventFDInterrupt()
        try vm.registerIRQFD(eventFD: interrupt.eventFD.fd, gsi: 5)
        #expect {
            try vm.registerIRQFD(eventFD: interrupt.eventFD.fd, gsi: 5)
        } throws: { error in
            (error as? KVMError)?.description.hasPrefix("KVM_IRQFD failed") == true
        }
        try vm.unregisterIRQFD(eventFD: interrupt.eventFD.fd, gsi: 5)
        try vm.registerIRQFD(eventFD: interrupt.eventFD.fd, gsi: 5)
    }

    @Test func ioeventfdPerQueueWithDatamatch() throws {
        let vm = try KVMSystem().createVM()
        try vm.createIRQChip()
        let base: UInt64 = 0xD000_0000
        let notifiers = try (0..<3).map { _ in try EventFD() }
        for (index, notifier) in notifiers.enumerated() {
            try vm.registerIOEventFD(eventFD: notifier.fd, address: base + VirtioMMIOTransport.queueNotifyOffset,
                                     length: 4, datamatch: UInt64(index))
        }
        #expect {
            try vm.registerIOEventFD(eventFD: notifiers[0].fd, address: base + 0x50, length: 4, datamatch: 0)
        } throws: { error in
            (error as? KVMError)?.description.hasPrefix("KVM_IOEVENTFD failed") == true
        }
        for (index, notifier) in notifiers.enumerated() {
            try vm.unregisterIOEventFD(eventFD: notifier.fd, address: base + 0x50, length: 4, datamatch: UInt64(index))
        }
        #expect(throws: KVMError.self) {
            try vm.unregisterIOEventFD(eventFD: notifiers[0].fd, address: base + 0x50, length: 4, datamatch: 0)
        }
    }

    /// The grace-period request (an ioeventfd registered and removed) works on a VM with its
    /// irqchip and leaves nothing behind: its probe's address and value can be registered after it.
    @Test func gracePeriodRequestLeavesNoIOEventFD() throws {
        let vm = try KVMSystem().createVM()
        try vm.createIRQChip()
        try vm.expediteGracePeriods()
        try vm.expediteGracePeriods()
        let probe = VirtualMachine.gracePeriodProbe
        let notifier = try EventFD()
        try vm.registerIOEventFD(eventFD: notifier.fd, address: probe.address, length: 8, datamatch: probe.value)
        #expect(throws: KVMError.self) {
            try vm.expediteGracePeriods()  // its own registration now collides
        }
        try vm.unregisterIOEventFD(eventFD: notifier.fd, address: probe.address, length: 8, datamatch: probe.value)
    }
}

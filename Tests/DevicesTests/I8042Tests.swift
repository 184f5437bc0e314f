import Testing
@testable import Devices

@Suite struct I8042Tests {
    let resets = Counter()

    func makeController(keyboard: FakeLine? = nil, mouse: FakeLine? = nil) -> I8042 {
        let resets = resets
        return I8042(onReset: { resets.hit() }, keyboardInterrupt: keyboard, mouseInterrupt: mouse)
    }

    /// Sends a controller command and reads its one-byte reply, the way Linux's i8042_command polls.
    func command(_ controller: I8042, _ byte: UInt8, data: UInt8? = nil) -> UInt8? {
        controller.commandPort.outb(0, byte)
        if let data { controller.dataPort.outb(0, data) }
        guard controller.commandPort.inb(0) & 0x01 != 0 else { return nil }
        return controller.dataPort.inb(0)
    }

    @Test func statusNeverShowsInputBufferFull() {
        let controller = makeController()
        #expect(controller.commandPort.inb(0) & 0x02 == 0)
        #expect(controller.commandPort.inb(0) & 0x01 == 0, "nothing to read")
        #expect(controller.commandPort.inb(0) & 0x10 != 0, "keylock off")
        #expect(controller.dataPort.inb(0) == 0, "an empty output buffer reads 0")
        controller.commandPort.outb(0, 0xAD)
        #expect(controller.commandPort.inb(0) & 0x0A == 0x08, "last write was a command, IBF still clear")
        controller.dataPort.outb(0, 0xF4)
        #expect(controller.commandPort.inb(0) & 0x0A == 0x00)
    }

    @Test func selfTestRepliesWith0x55() {
        let controller = makeController()
        #expect(command(controller, 0xAA) == 0x55)
        #expect(controller.commandPort.inb(0) & 0x01 == 0, "reply consumed")
        #expect(command(controller, 0xAB) == 0x00, "keyboard interface test passes")
        #expect(command(controller, 0xA9) == 0x00, "AUX interface test passes")
    }

    @Test func pulseResetCommandCallsOnReset() {
        let controller = makeController()
        controller.commandPort.outb(0, 0xFE)
        #expect(resets.count == 1)
        controller.commandPort.outb(0, 0xFF)  // pulses nothing
        #expect(resets.count == 1)
        controller.commandPort.outb(0, 0xF0)  // pulses all four low bits, reset among them
        #expect(resets.count == 2)
    }

    @Test func outputPortBitZeroClearResets() {
        let controller = makeController()
        controller.commandPort.outb(0, 0xD1)
        controller.dataPort.outb(0, 0x03)
        #expect(resets.count == 0)
        #expect(command(controller, 0xD0) == 0x03)
        controller.commandPort.outb(0, 0xD1)
        controller.dataPort.outb(0, 0x02)
        #expect(resets.count == 1)
        #expect(command(controller, 0xD0)! & 0x01 == 0x01, "the reset line is released again")
    }

    @Test func resetOnTheBusCallsTheCallbackOnce() throws {
        let controller = makeController()
        let bus = Bus(name: "pio")
        try controller.register(on: bus)
        #expect(bus.devices.map(\.base) == [0x60, 0x64])
        #expect(bus.devices.allSatisfy { $0.length == 1 })
        var value: UInt8 = 0xFE
        withUnsafeBytes(of: &value) { _ = bus.write(address: 0x64, from: $0) }
        #expect(resets.count == 1)
        withUnsafeMutableBytes(of: &value) { _ = bus.read(address: 0x64, into: $0) }
        #expect(value & 0x02 == 0)
    }

    @Test func commandByteReadWriteAndPortEnables() {
        let controller = makeController()
        let initial = command(controller, 0x20)!
        #expect(initial & 0x04 != 0, "system flag set, as after POST")
        #expect(controller.commandPort.inb(0) & 0x04 != 0)
        controller.commandPort.outb(0, 0xAD)
        #expect(command(controller, 0x20)! & 0x10 != 0, "keyboard disabled")
        controller.commandPort.outb(0, 0xAE)
        #expect(command(controller, 0x20)! & 0x10 == 0)
        controller.commandPort.outb(0, 0x60)
        controller.dataPort.outb(0, 0x45)
        #expect(command(controller, 0x20)! == 0x65, "AUX stays disabled without a mouse line")
        // Controller RAM beyond the command byte.
        controller.commandPort.outb(0, 0x63)
        controller.dataPort.outb(0, 0x9C)
        #expect(command(controller, 0x23) == 0x9C)
    }

    @Test func aBareControllerHasNoAUXPort() {
        // Linux's i8042_check_aux: loop test passes, then AUX enable must clear AUXDIS or there is no AUX.
        let controller = makeController()
        controller.commandPort.outb(0, 0xD3)
        controller.dataPort.outb(0, 0x5A)
        #expect(controller.commandPort.inb(0) & 0x21 == 0x21, "looped byte is flagged as AUX data")
        #expect(controller.dataPort.inb(0) == 0x5A)
        controller.commandPort.outb(0, 0xA7)
        #expect(command(controller, 0x20)! & 0x20 != 0)
        controller.commandPort.outb(0, 0xA8)
        #expect(command(controller, 0x20)! & 0x20 != 0, "AUX cannot be enabled: no AUX port")
    }

    @Test func withAMouseLineTheAUXPortWorksAndInterrupts() {
        let mouse = FakeLine()
        let controller = makeController(mouse: mouse)
        controller.commandPort.outb(0, 0xA8)
        #expect(command(controller, 0x20)! & 0x20 == 0)
        // Enable the AUX interrupt, then loop a byte: IRQ 12 fires, as Linux's AUX IRQ test expects.
        controller.commandPort.outb(0, 0x60)
        controller.dataPort.outb(0, 0x47)
        controller.commandPort.outb(0, 0xD3)
        controller.dataPort.outb(0, 0xA5)
        #expect(mouse.level)
        #expect(controller.dataPort.inb(0) == 0xA5)
        #expect(!mouse.level)
        // A byte for the (absent) mouse is answered with "resend".
        controller.commandPort.outb(0, 0xD4)
        controller.dataPort.outb(0, 0xFF)
        #expect(mouse.level)
        #expect(controller.dataPort.inb(0) == 0xFE)
    }

    @Test func keyboardBytesAreNAKedOnlyWhenIRQ1IsWired() {
        let bare = makeController()
        bare.dataPort.outb(0, 0xF2)
        #expect(bare.commandPort.inb(0) & 0x01 == 0, "no IRQ 1: swallowed, so polled commands stay in step")

        let keyboard = FakeLine()
        let controller = makeController(keyboard: keyboard)
        controller.dataPort.outb(0, 0xF2)  // GET ID
        #expect(keyboard.level)
        #expect(controller.commandPort.inb(0) & 0x21 == 0x01)
        #expect(controller.dataPort.inb(0) == 0xFE)
        #expect(!keyboard.level)
    }

    @Test func eachQueuedByteGetsItsOwnEdge() {
        let keyboard = FakeLine()
        let controller = makeController(keyboard: keyboard)
        controller.dataPort.outb(0, 0xF2)
        controller.dataPort.outb(0, 0xED)
        #expect(keyboard.history == [true])
        _ = controller.dataPort.inb(0)
        #expect(keyboard.history == [true, false, true], "ISA IRQs are edge-triggered")
        _ = controller.dataPort.inb(0)
        #expect(keyboard.history == [true, false, true, false])
    }

    @Test func commandRepliesRaiseIRQ1OnlyWhenEnabledInTheCommandByte() {
        let keyboard = FakeLine()
        let controller = makeController(keyboard: keyboard)
        controller.commandPort.outb(0, 0x60)
        controller.dataPort.outb(0, 0x64)  // keyboard interrupt off, as Linux sets it while probing
        #expect(command(controller, 0xAA) == 0x55)
        #expect(keyboard.raises == 0)
    }

    @Test func wideAndOffsetAccessesAreHarmless() {
        let controller = makeController()
        #expect(controller.commandPort.read(0, size: 2) >> 8 == 0xFF, "the byte past the port floats high")
        controller.commandPort.write(0, size: 4, value: 0xFFFF_FFAA)  // only the first byte lands
        #expect(controller.dataPort.inb(0) == 0x55)
        #expect(controller.dataPort.read(5, size: 1) == 0xFF)
        #expect(resets.count == 0)
    }
}

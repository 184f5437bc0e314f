import Synchronization

/// An i8042 PS/2 keyboard controller with nothing plugged in, there so the guest can probe it
/// and reboot through it (command 0xFE, or an output-port write with bit 0 clear).
///
/// Its two ports are not contiguous (0x61 between them belongs to the PIT/speaker), so it is
/// registered as two 1-port devices: `dataPort` at 0x60 and `commandPort` at 0x64, or both at
/// once with `register(on:)`.
public final class I8042: Sendable {
    /// Data port (read: output buffer; write: data for the controller or the keyboard).
    public static let dataPortAddress: UInt64 = 0x60
    /// Status (read) and command (write) port.
    public static let commandPortAddress: UInt64 = 0x64
    /// ISA IRQ of the keyboard port.
    public static let keyboardIRQ: UInt32 = 1
    /// ISA IRQ of the auxiliary (mouse) port.
    public static let mouseIRQ: UInt32 = 12

    // Status register bits.
    static let statusOBF: UInt8 = 0x01, statusSYS: UInt8 = 0x04, statusCMD: UInt8 = 0x08
    static let statusUnlocked: UInt8 = 0x10, statusAUXDATA: UInt8 = 0x20
    // Controller command byte (CTR) bits.
    static let ctrKBDINT: UInt8 = 0x01, ctrAUXINT: UInt8 = 0x02, ctrSYS: UInt8 = 0x04
    static let ctrKBDDIS: UInt8 = 0x10, ctrAUXDIS: UInt8 = 0x20
    /// Replies queue up to this many bytes; a real 8042 holds one, but queueing keeps replies ordered.
    static let outputCapacity = 16

    struct State {
        /// Controller RAM; byte 0 is the command byte. Default as a BIOS leaves it: translation on,
        /// system flag set, keyboard interrupt on, AUX disabled.
        var ram: [UInt8] = [0x65] + [UInt8](repeating: 0, count: 31)
        /// Output port: reset line (bit 0) and A20 (bit 1) high, as QEMU.
        var outputPort: UInt8 = 0xCF
        var output: [(byte: UInt8, aux: Bool)] = []
        /// Controller command waiting for its data byte on port 0x60.
        var pendingCommand: UInt8?
        var lastWriteWasCommand = false
        var keyboardLineHigh = false
        var mouseLineHigh = false

        var ctr: UInt8 {
            get { ram[0] }
            set { ram[0] = newValue }
        }

        mutating func reply(_ byte: UInt8, aux: Bool = false) {
            if output.count < I8042.outputCapacity { output.append((byte, aux)) }
        }
    }

    private let onReset: @Sendable () -> Void
    let keyboardInterrupt: (any InterruptLine)?
    let mouseInterrupt: (any InterruptLine)?
    let state = Mutex(State())

    /// Creates the controller.
    ///
    /// - Parameters:
    ///   - onReset: called (without the device lock) when the guest pulses the CPU reset line.
    ///   - keyboardInterrupt: IRQ 1. When wired, bytes sent to the absent keyboard are answered
    ///     with 0xFE (resend) so Linux's atkbd gives up at once; unwired, they are swallowed and
    ///     atkbd waits out its timeouts instead of reading a reply that would confuse polled commands.
    ///   - mouseInterrupt: IRQ 12. Unwired, the AUX port is absent: 0xA8 cannot clear the AUX-disable
    ///     bit, which Linux's i8042_check_aux reads as "no AUX port" without waiting for an IRQ.
    public init(
        onReset: @escaping @Sendable () -> Void,
        keyboardInterrupt: (any InterruptLine)? = nil,
        mouseInterrupt: (any InterruptLine)? = nil
    ) {
        self.onReset = onReset
        self.keyboardInterrupt = keyboardInterrupt
        self.mouseInterrupt = mouseInterrupt
    }

    /// The 1-port device to register at `dataPortAddress` (0x60).
    public var dataPort: any BusDevice { Port(controller: self, isCommandPort: false) }

    /// The 1-port device to register at `commandPortAddress` (0x64).
    public var commandPort: any BusDevice { Port(controller: self, isCommandPort: true) }

    /// Registers both ports on a port I/O bus.
    public func register(on bus: Bus) throws(BusError) {
        try bus.insert(dataPort, base: Self.dataPortAddress, length: 1, name: "i8042-data")
        try bus.insert(commandPort, base: Self.commandPortAddress, length: 1, name: "i8042-command")
    }

    /// One of the controller's ports as a bus device.
    final class Port: BusDevice {
        let controller: I8042
        let isCommandPort: Bool

        init(controller: I8042, isCommandPort: Bool) {
            self.controller = controller
            self.isCommandPort = isCommandPort
        }

        func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
            for index in 0..<data.count {
                guard byteRegister(offset, index, count: 1) != nil else { data[index] = 0xFF; continue }
                data[index] = isCommandPort ? controller.readStatus() : controller.readData()
            }
        }

        func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
            for index in 0..<data.count where byteRegister(offset, index, count: 1) != nil {
                if isCommandPort { controller.writeCommand(data[index]) } else { controller.writeData(data[index]) }
            }
        }
    }

    func readStatus() -> UInt8 {
        state.withLock { s in
            // Input buffer full (bit 1) is never set: we consume writes instantly, so kb_wait() proceeds.
            var status = Self.statusUnlocked
            if let head = s.output.first {
                status |= Self.statusOBF
                if head.aux { status |= Self.statusAUXDATA }
            }
            if s.ctr & Self.ctrSYS != 0 { status |= Self.statusSYS }
            if s.lastWriteWasCommand { status |= Self.statusCMD }
            return status
        }
    }

    func readData() -> UInt8 {
        state.withLock { s in
            let byte = s.output.isEmpty ? 0 : s.output.removeFirst().byte
            // ISA IRQs are edge-triggered: drop the line on every read so a queued byte makes a new edge.
            lowerLines(&s)
            updateLines(&s)
            return byte
        }
    }

    func writeCommand(_ command: UInt8) {
        let reset = state.withLock { s -> Bool in
            s.lastWriteWasCommand = true
            s.pendingCommand = nil  // a new command abandons one still waiting for its data byte
            var reset = false
            switch command {
            case 0x20...0x3F: s.reply(s.ram[Int(command & 0x1F)])
            case 0x60...0x7F, 0xD1, 0xD2, 0xD3, 0xD4: s.pendingCommand = command
            case 0xA4: s.reply(0xF1)  // no password installed
            case 0xA7: s.ctr |= Self.ctrAUXDIS
            case 0xA8: if mouseInterrupt != nil { s.ctr &= ~Self.ctrAUXDIS }
            case 0xA9, 0xAB: s.reply(0x00)  // AUX / keyboard interface test: no error
            case 0xAA: s.reply(0x55)  // controller self-test passed
            case 0xAD: s.ctr |= Self.ctrKBDDIS
            case 0xAE: s.ctr &= ~Self.ctrKBDDIS
            case 0xC0: s.reply(0x80)  // input port: keyboard not inhibited
            case 0xD0: s.reply(s.outputPort)
            case 0xDD: s.outputPort &= ~0x02  // A20 is not modelled; the bit just reads back
            case 0xDF: s.outputPort |= 0x02
            case 0xF0...0xFF: reset = command & 0x01 == 0  // pulse output-port bits; bit 0 is CPU reset
            default: break
            }
            updateLines(&s)
            return reset
        }
        if reset { onReset() }
    }

    func writeData(_ value: UInt8) {
        let reset = state.withLock { s -> Bool in
            s.lastWriteWasCommand = false
            var reset = false
            if let command = s.pendingCommand {
                s.pendingCommand = nil
                switch command {
                case 0x60...0x7F:
                    var stored = value
                    if command == 0x60 && mouseInterrupt == nil { stored |= Self.ctrAUXDIS }  // no AUX port
                    s.ram[Int(command & 0x1F)] = stored
                case 0xD1:
                    // Bit 0 low holds the CPU in reset; it comes back up with the line released.
                    reset = value & 0x01 == 0
                    s.outputPort = value | 0x01
                case 0xD2: s.reply(value)  // as if the keyboard had sent it
                case 0xD3: s.reply(value, aux: true)  // as if the mouse had sent it
                default: s.reply(0xFE, aux: true)  // 0xD4: no mouse to take the byte
                }
            } else if keyboardInterrupt != nil {
                s.reply(0xFE)  // no keyboard: every byte sent to it is answered "resend"
            }
            updateLines(&s)
            return reset
        }
        if reset { onReset() }
    }

    private func lowerLines(_ s: inout State) {
        if s.keyboardLineHigh { s.keyboardLineHigh = false; keyboardInterrupt?.setLevel(false) }
        if s.mouseLineHigh { s.mouseLineHigh = false; mouseInterrupt?.setLevel(false) }
    }

    private func updateLines(_ s: inout State) {
        let head = s.output.first
        let keyboard = head.map { !$0.aux } == true && s.ctr & Self.ctrKBDINT != 0
        let mouse = head?.aux == true && s.ctr & Self.ctrAUXINT != 0
        if keyboard != s.keyboardLineHigh { s.keyboardLineHigh = keyboard; keyboardInterrupt?.setLevel(keyboard) }
        if mouse != s.mouseLineHigh { s.mouseLineHigh = mouse; mouseInterrupt?.setLevel(mouse) }
    }
}

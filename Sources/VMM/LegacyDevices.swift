import Devices
import KVM

/// The PC devices every Vireo VM has: COM1, the i8042 (reset line), the CMOS RTC, a POST-code
/// sink and, optionally, the QEMU-compatible debug-exit port.
final class LegacyDevices: Sendable {
    let serial: Serial8250
    let i8042: I8042
    let rtc: CMOSRTC
    let debugExit: DebugExit?
    let debugExitPort: UInt16?
    private let postCode = IgnoredPort()

    init(vm: VirtualMachine, console: ConsoleOutput, debugExitPort: UInt16?,
         onReset: @escaping @Sendable () -> Void, onDebugExit: @escaping @Sendable (Int32) -> Void) {
        // IRQ 4 is edge-triggered (MP table): an irqfd pulse per rising edge beats an ioctl per change.
        var serialLine: any InterruptLine = IRQLine(vm: vm, gsi: UInt32(Serial8250.com1IRQ))
        if let line = try? IRQFDLine(), (try? vm.registerIRQFD(eventFD: line.eventFD.fd, gsi: UInt32(Serial8250.com1IRQ))) != nil {
            serialLine = line
        }
        let serial = Serial8250(interrupt: serialLine, sink: console)
        self.serial = serial
        // Wiring IRQ 1 lets Linux's atkbd get an immediate 'no keyboard' answer instead of timeouts.
        // Buffered console output is written out before a reset is judged (panic banner or not).
        i8042 = I8042(onReset: { serial.flushOutput(); onReset() }, keyboardInterrupt: IRQLine(vm: vm, gsi: I8042.keyboardIRQ))
        rtc = CMOSRTC()
        self.debugExitPort = debugExitPort
        debugExit = debugExitPort.map { _ in DebugExit(onExit: onDebugExit) }
    }

    func register(on bus: Bus) throws(BusError) {
        try bus.insert(serial, base: Serial8250.com1Base, length: Serial8250.portCount, name: "serial-com1")
        try i8042.register(on: bus)
        try bus.insert(rtc, base: CMOSRTC.basePort, length: CMOSRTC.portCount, name: "cmos-rtc")
        // Linux's io_delay writes port 0x80 constantly; claim it so it is not counted as unknown.
        try bus.insert(postCode, base: 0x80, length: 1, name: "post-code")
        if let debugExit, let debugExitPort {
            try bus.insert(debugExit, base: UInt64(debugExitPort), length: 1, name: "debug-exit")
        }
    }
}

/// A port that reads as zero and ignores writes (the POST diagnostic port).
final class IgnoredPort: BusDevice {
    func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) { data.storeAccessValue(0) }
    func write(offset: UInt64, from data: UnsafeRawBufferPointer) {}
}

import Glibc
import Synchronization
import Testing
@testable import Devices

// Register offsets and bits, as in Linux's serial_reg.h.
private let RBR: UInt64 = 0, IER: UInt64 = 1, IIR: UInt64 = 2, FCR: UInt64 = 2
private let LCR: UInt64 = 3, MCR: UInt64 = 4, LSR: UInt64 = 5, MSR: UInt64 = 6, SCR: UInt64 = 7
private let OUT2: UInt8 = 0x08, LOOP: UInt8 = 0x10

@Suite struct Serial8250Tests {
    let line = FakeLine()
    let sink = FakeSink()

    func makeUART(onReceiveSpace: (@Sendable () -> Void)? = nil) -> Serial8250 {
        Serial8250(interrupt: line, sink: sink, onReceiveSpace: onReceiveSpace)
    }

    @Test func divisorLatchShadowsRBRAndIER() {
        let uart = makeUART()
        uart.outb(IER, 0x05)
        uart.outb(LCR, 0x80 | 0x03)
        uart.outb(RBR, 0x01)  // DLL: 115200 baud
        uart.outb(IER, 0x00)  // DLM
        #expect(uart.inb(RBR) == 0x01)
        #expect(uart.inb(IER) == 0x00)
        #expect(sink.output.isEmpty, "a DLL write is not a transmit")
        uart.outb(LCR, 0x03)
        #expect(uart.inb(IER) == 0x05, "IER survives the DLAB window")
        #expect(uart.inb(LCR) == 0x03)
        uart.outb(LCR, 0x83)
        #expect(uart.inb(RBR) == 0x01 && uart.inb(IER) == 0x00)
    }

    @Test func scratchRegisterHoldsAnyByte() {
        let uart = makeUART()
        for value: UInt8 in [0x00, 0x5A, 0xA5, 0xFF] {
            uart.outb(SCR, value)
            #expect(uart.inb(SCR) == value)
        }
    }

    @Test func fifoEnableSetsIIRTopBits() {
        let uart = makeUART()
        #expect(uart.inb(IIR) == 0x01)
        uart.outb(FCR, 0x01)
        #expect(uart.inb(IIR) == 0xC1)
        uart.outb(IER, 0x02)
        #expect(uart.inb(IIR) == 0xC2)
        #expect(uart.inb(IIR) == 0xC1, "reading IIR acknowledged THRE")
        uart.outb(FCR, 0x00)
        #expect(uart.inb(IIR) == 0x01)
    }

    @Test func ierKeepsOnlyTheLowNibble() {
        let uart = makeUART()
        uart.outb(IER, 0xFF)
        #expect(uart.inb(IER) == 0x0F)
    }

    @Test func threInterruptOnETBEIRiseClearedByIIRReadAndRearmed() {
        let uart = makeUART()
        uart.outb(MCR, OUT2)
        #expect(!line.level)
        uart.outb(IER, 0x02)
        #expect(line.level, "ETBEI 0→1 with THR empty raises THRE at once")
        #expect(uart.inb(IIR) == 0x02)
        #expect(!line.level, "an IIR read that reports THRE clears it")
        #expect(uart.inb(IIR) == 0x01)
        uart.outb(IER, 0x02)
        #expect(!line.level, "rewriting ETBEI=1 is not a rising edge")
        uart.outb(IER, 0x00)
        uart.outb(IER, 0x02)
        #expect(line.level, "a new 0→1 edge re-raises it")
        #expect(uart.inb(IIR) == 0x02)
        #expect(!line.level)
        uart.outb(RBR, UInt8(ascii: "x"))
        #expect(line.level, "after a THR write the transmitter empties at once, so THRE is back")
        uart.outb(IER, 0x00)
        #expect(!line.level, "clearing ETBEI drops it")
        #expect(uart.inb(IIR) == 0x01)
        #expect(line.history == [true, false, true, false, true, false])
    }

    @Test func linuxTHREBugTestSeesAWorkingUART() {
        // serial8250_do_startup: THRE must re-assert on each ETBEI 0→1 or Linux flags UART_BUG_THRE.
        let uart = makeUART()
        uart.outb(IER, 0x02)
        let iir1 = uart.inb(IIR)
        uart.outb(IER, 0x00)
        uart.outb(IER, 0x02)
        let iir = uart.inb(IIR)
        uart.outb(IER, 0x00)
        #expect(iir1 & 0x01 == 0 && iir & 0x01 == 0)
    }

    @Test func receivedDataInterruptUntilDrained() {
        let uart = makeUART()
        uart.outb(MCR, OUT2)
        uart.outb(IER, 0x01)
        #expect(!line.level)
        #expect(uart.receive([0x41, 0x42, 0x43]) == 3)
        #expect(line.level)
        #expect(uart.inb(IIR) == 0x04)
        #expect(uart.inb(IIR) == 0x04, "RDA is not acknowledged by reading IIR")
        #expect(uart.inb(LSR) & 0x01 == 0x01)
        #expect(uart.inb(RBR) == 0x41)
        #expect(uart.inb(RBR) == 0x42)
        #expect(line.level)
        #expect(uart.inb(RBR) == 0x43)
        #expect(!line.level)
        #expect(uart.inb(IIR) == 0x01)
        #expect(uart.inb(LSR) == 0x60, "THRE|TEMT, no data")
        #expect(uart.inb(RBR) == 0x00, "an empty RBR reads 0")
        #expect(uart.bytesReceived == 3)
    }

    @Test func interruptPriorityOrder() {
        let uart = makeUART()
        // Modem-status delta: loopback with no MCR outputs drops CTS/DSR/DCD, then coming back raises them.
        uart.outb(MCR, LOOP)
        uart.outb(MCR, OUT2)
        // Overrun (line status) and data.
        #expect(uart.receiveDroppingOverflow([UInt8](repeating: 7, count: Serial8250.receiveCapacity + 1))
            == Serial8250.receiveCapacity)
        uart.outb(IER, 0x0F)  // also arms THRE
        #expect(line.level)
        #expect(uart.inb(IIR) == 0x06, "line status first")
        #expect(uart.inb(IIR) == 0x06)
        #expect(uart.inb(LSR) & 0x02 == 0x02)
        #expect(uart.inb(IIR) == 0x04, "then received data")
        for _ in 0..<Serial8250.receiveCapacity { _ = uart.inb(RBR) }
        #expect(uart.inb(IIR) == 0x02, "then THR empty")
        #expect(uart.inb(IIR) == 0x00, "then modem status")
        #expect(line.level)
        let msr = uart.inb(MSR)
        #expect(msr == 0xB0 | 0x0B, "CTS/DSR/DCD up, with their deltas")
        #expect(uart.inb(IIR) == 0x01)
        #expect(!line.level)
    }

    @Test func out2GatesTheIRQLine() {
        let uart = makeUART()
        uart.outb(IER, 0x01)
        _ = uart.receive([1])
        #expect(!line.level, "OUT2 low: nothing reaches the PIC")
        uart.outb(MCR, OUT2)
        #expect(line.level)
        uart.outb(MCR, 0x03)
        #expect(!line.level)
        uart.outb(MCR, OUT2 | 0x03)
        #expect(line.level)
        _ = uart.inb(RBR)
        #expect(!line.level)
    }

    @Test func loopbackReflectsMCRAndLoopsTHRToRBR() {
        let uart = makeUART()
        uart.outb(MCR, LOOP | 0x0A)  // what Linux's autoconfig writes
        #expect(uart.inb(MSR) & 0xF0 == 0x90, "RTS→CTS, OUT2→DCD")
        uart.outb(MCR, LOOP | 0x01)
        #expect(uart.inb(MSR) == 0x20 | 0x0B, "DTR→DSR; CTS, DSR and DCD all changed")
        uart.outb(MCR, LOOP | 0x04)
        #expect(uart.inb(MSR) & 0xF0 == 0x40, "OUT1→RI")
        uart.outb(MCR, LOOP)
        #expect(uart.inb(MSR) == 0x04, "RI's trailing edge sets TERI")

        uart.outb(IER, 0x01)
        uart.outb(MCR, LOOP | OUT2)
        uart.outb(RBR, 0x5A)
        #expect(sink.output.isEmpty, "looped bytes do not reach the wire")
        #expect(uart.bytesTransmitted == 0)
        #expect(uart.inb(LSR) & 0x01 == 0x01)
        #expect(uart.inb(IIR) == 0x04)
        #expect(!line.level, "loopback forces the OUT2 pin inactive")
        #expect(uart.receive([1, 2, 3]) == 0, "serial input is disconnected in loopback")
        #expect(uart.inb(RBR) == 0x5A)
        #expect(uart.inb(LSR) & 0x01 == 0)

        uart.outb(MCR, OUT2)
        #expect(uart.inb(MSR) & 0xF0 == 0xB0, "out of loopback the modem looks connected")
        #expect(uart.receive([1, 2, 3]) == 3)
        #expect(line.level)
    }

    @Test func loopbackOverrunLosesTheNewByte() {
        let uart = makeUART()
        uart.outb(MCR, LOOP)
        for index in 0..<(Serial8250.receiveCapacity + 1) { uart.outb(RBR, UInt8(index)) }
        #expect(uart.inb(LSR) == 0x63, "DR|OE|THRE|TEMT")
        #expect(uart.inb(LSR) == 0x61, "OE clears on read")
        #expect(uart.inb(RBR) == 0)
    }

    @Test func overflowFlagsOverrunOnlyWhenBytesAreDropped() {
        let uart = makeUART()
        let bytes = [UInt8](repeating: 0x33, count: 70)
        #expect(uart.receive(bytes) == Serial8250.receiveCapacity)
        #expect(uart.inb(LSR) & 0x02 == 0, "refused bytes stay with the caller: no overrun")
        #expect(uart.receiveSpace == 0)
        #expect(uart.receiveDroppingOverflow([1]) == 0)
        #expect(uart.inb(LSR) == 0x63)
        #expect(uart.inb(LSR) == 0x61)
        uart.outb(IER, 0x04)
        uart.outb(MCR, OUT2)
        _ = uart.receiveDroppingOverflow([1])
        #expect(line.level, "an overrun raises the line-status interrupt")
        #expect(uart.inb(IIR) == 0x06)
        _ = uart.inb(LSR)
        #expect(!line.level)
    }

    @Test func transmitGoesToTheSinkAndIsCounted() {
        let uart = makeUART()
        for byte in "hello\n".utf8 { uart.outb(RBR, byte) }
        #expect(sink.output == Array("hello\n".utf8))
        #expect(uart.bytesTransmitted == 6)
        #expect(uart.inb(LSR) & 0x60 == 0x60, "always ready for the next byte")
    }

    @Test func fifoClearAndToggleDropReceivedData() {
        let uart = makeUART()
        uart.outb(FCR, 0x01)
        _ = uart.receive([1, 2, 3])
        uart.outb(FCR, 0x01)
        #expect(uart.inb(LSR) & 0x01 == 1, "rewriting enable does not clear")
        uart.outb(FCR, 0x03)
        #expect(uart.inb(LSR) & 0x01 == 0, "RCVR FIFO reset")
        _ = uart.receive([1])
        uart.outb(FCR, 0x00)
        #expect(uart.inb(LSR) & 0x01 == 0, "disabling FIFOs clears them")
    }

    @Test func receiveSpaceCallbackAfterRefusal() {
        let calls = Counter()
        let uart = makeUART(onReceiveSpace: { calls.hit() })
        _ = uart.receive([1, 2])
        _ = uart.inb(RBR); _ = uart.inb(RBR)
        #expect(calls.count == 0, "no refusal, no callback")
        #expect(uart.receive([UInt8](repeating: 9, count: 100)) == 64)
        for _ in 0..<63 { _ = uart.inb(RBR) }
        #expect(calls.count == 0)
        _ = uart.inb(RBR)
        #expect(calls.count == 1, "fires once the FIFO has drained")
        _ = uart.inb(RBR)
        #expect(calls.count == 1)
    }

    @Test func linuxAutoconfigIdentifies16550A() {
        // The register dance of drivers/tty/serial/8250/8250_port.c autoconfig().
        let uart = makeUART()
        let savedIER = uart.inb(IER)
        uart.outb(IER, 0)
        let scratch2 = uart.inb(IER) & 0x0F
        uart.outb(IER, 0x0F)
        let scratch3 = uart.inb(IER) & 0x0F
        uart.outb(IER, savedIER)
        #expect(scratch2 == 0 && scratch3 == 0x0F)

        let savedMCR = uart.inb(MCR)
        uart.outb(MCR, LOOP | 0x0A)
        let status1 = uart.inb(MSR) & 0xF0
        uart.outb(MCR, savedMCR)
        #expect(status1 == 0x90)

        uart.outb(LCR, 0xBF)
        uart.outb(2, 0)  // EFR on a 16650; FCR here
        uart.outb(LCR, 0)
        uart.outb(FCR, 0x01)
        #expect(uart.inb(IIR) >> 6 == 3, "16550A")

        // autoconfig_16550a: no EFR behind LCR=0xBF or DLAB ...
        uart.outb(LCR, 0xBF)
        #expect(uart.inb(2) != 0)
        uart.outb(LCR, 0x80)
        #expect(uart.inb(2) != 0)
        // ... no NatSemi EXCR1 mirroring MCR.LOOP ...
        uart.outb(LCR, 0)
        let mcr = uart.inb(MCR)
        uart.outb(LCR, 0xE0)
        let excr1 = uart.inb(2)
        #expect((excr1 ^ mcr) & LOOP == 0)
        uart.outb(LCR, 0)
        uart.outb(MCR, mcr ^ LOOP)
        uart.outb(LCR, 0xE0)
        let excr1Again = uart.inb(2)
        uart.outb(LCR, 0)
        uart.outb(MCR, mcr)
        #expect((excr1Again ^ mcr) & LOOP == 0)
        // ... not a 16750 (no 64-byte FIFO bit) ...
        uart.outb(FCR, 0x01 | 0x20)
        let iir750a = uart.inb(IIR) >> 5
        uart.outb(FCR, 0x01)
        uart.outb(LCR, 0x80)
        uart.outb(FCR, 0x01 | 0x20)
        let iir750b = uart.inb(IIR) >> 5
        uart.outb(FCR, 0x01)
        uart.outb(LCR, 0)
        #expect(!(iir750a == 6 && iir750b == 7))
        // ... and no XScale UUE bit.
        uart.outb(IER, 0x40)
        #expect(uart.inb(IER) & 0x40 == 0)
        #expect(uart.inb(LSR) != 0xFF)
    }

    @Test func wideAccessesSplitIntoBytes() {
        let uart = makeUART()
        uart.write(LCR, size: 2, value: 0x0B_03)  // LCR=0x03, MCR=0x0B
        #expect(uart.inb(LCR) == 0x03 && uart.inb(MCR) == 0x0B)
        uart.outb(SCR, 0x77)
        #expect(uart.read(SCR, size: 2) == 0xFF77, "the byte past the last port floats high")
        #expect(uart.read(LSR, size: 4) & 0xFF == 0x60)
    }

    @Test func concurrentReceiveLosesNothing() {
        let uart = makeUART()
        let total = 20_000
        // A real thread, not a task: both sides spin, which must not starve the cooperative pool.
        let producer = startThread {
            var sent = 0
            while sent < total {
                let chunk = (sent..<min(sent + 37, total)).map { UInt8(truncatingIfNeeded: $0 * 7) }
                let taken = uart.receive(chunk)
                sent += taken
                if taken < chunk.count { sched_yield() }
            }
        }
        var got: [UInt8] = []
        got.reserveCapacity(total)
        while got.count < total {
            if uart.inb(LSR) & 0x01 != 0 { got.append(uart.inb(RBR)) } else { sched_yield() }
        }
        pthread_join(producer, nil)
        #expect(got == (0..<total).map { UInt8(truncatingIfNeeded: $0 * 7) })
        #expect(uart.bytesReceived == UInt64(total))
        #expect(uart.inb(LSR) & 0x03 == 0, "no data left, no overrun")
    }
}

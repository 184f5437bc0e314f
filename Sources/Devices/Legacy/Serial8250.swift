import Synchronization

/// A 16550A UART (a PC COM port) whose transmitter sends each byte to a `ConsoleSink` (directly,
/// or in bursts through its output thread).
///
/// Register it on the port I/O bus at `Serial8250.com1Base` (0x3F8) with length `portCount` (8)
/// and wire `interrupt` to IRQ 4. The transmitter is modelled as infinitely fast: THR and the
/// shift register are always empty, so LSR always reads THRE|TEMT and the THRE interrupt re-arms
/// immediately after each THR write.
public final class Serial8250: BusDevice {
    /// Base port of COM1.
    public static let com1Base: UInt64 = 0x3F8
    /// ISA IRQ of COM1.
    public static let com1IRQ: UInt32 = 4
    /// Number of ports the UART decodes.
    public static let portCount: UInt64 = 8
    /// Depth of the receive FIFO (deeper than a real 16550A's 16; the driver drains while LSR.DR).
    public static let receiveCapacity = 64

    // Register bits, named as in Linux's serial_reg.h.
    static let ierRDI: UInt8 = 0x01, ierTHRI: UInt8 = 0x02, ierRLSI: UInt8 = 0x04, ierMSI: UInt8 = 0x08
    static let iirNoInt: UInt8 = 0x01, iirMSI: UInt8 = 0x00, iirTHRI: UInt8 = 0x02
    static let iirRDI: UInt8 = 0x04, iirRLSI: UInt8 = 0x06, iirFIFOs: UInt8 = 0xC0
    static let lcrDLAB: UInt8 = 0x80
    static let mcrDTR: UInt8 = 0x01, mcrRTS: UInt8 = 0x02, mcrOUT1: UInt8 = 0x04
    static let mcrOUT2: UInt8 = 0x08, mcrLOOP: UInt8 = 0x10
    static let lsrDR: UInt8 = 0x01, lsrOE: UInt8 = 0x02, lsrTHRE: UInt8 = 0x20, lsrTEMT: UInt8 = 0x40
    static let msrDCTS: UInt8 = 0x01, msrDDSR: UInt8 = 0x02, msrTERI: UInt8 = 0x04, msrDDCD: UInt8 = 0x08
    static let msrCTS: UInt8 = 0x10, msrDSR: UInt8 = 0x20, msrRI: UInt8 = 0x40, msrDCD: UInt8 = 0x80

    struct State {
        var fifo = [UInt8](repeating: 0, count: Serial8250.receiveCapacity)
        var fifoHead = 0
        var fifoCount = 0
        var ier: UInt8 = 0
        var lcr: UInt8 = 0
        var mcr: UInt8 = 0
        var scr: UInt8 = 0
        var dll: UInt8 = 0x0C  // 9600 baud from the 1.8432 MHz clock, the usual firmware default
        var dlm: UInt8 = 0
        var fifosEnabled = false
        var overrun = false
        /// THRE interrupt armed: set on IER.ETBEI 0→1 and after each transmit, cleared by an IIR read
        /// that reports it (it stays meaningless, and false, while ETBEI is clear).
        var thrPending = false
        /// MSR bits 3:0, accumulated until the guest reads MSR.
        var msrDeltas: UInt8 = 0
        var lineHigh = false
        /// The input thread was refused bytes and wants to hear when there is room again.
        var producerWaiting = false

        var loopback: Bool { mcr & Serial8250.mcrLOOP != 0 }

        mutating func push(_ byte: UInt8) -> Bool {
            guard fifoCount < fifo.count else { return false }
            fifo[(fifoHead + fifoCount) % fifo.count] = byte
            fifoCount += 1
            return true
        }

        mutating func pop() -> UInt8? {
            guard fifoCount > 0 else { return nil }
            let byte = fifo[fifoHead]
            fifoHead = (fifoHead + 1) % fifo.count
            fifoCount -= 1
            return byte
        }

        mutating func clearFIFO() { fifoHead = 0; fifoCount = 0 }

        /// MSR bits 7:4. Outside loopback the modem lines are reported as a happy, connected modem
        /// (CTS, DSR, DCD) so drivers never wait on flow control; in loopback they follow MCR.
        func modemLines() -> UInt8 {
            guard loopback else { return Serial8250.msrCTS | Serial8250.msrDSR | Serial8250.msrDCD }
            var lines: UInt8 = 0
            if mcr & Serial8250.mcrRTS != 0 { lines |= Serial8250.msrCTS }
            if mcr & Serial8250.mcrDTR != 0 { lines |= Serial8250.msrDSR }
            if mcr & Serial8250.mcrOUT1 != 0 { lines |= Serial8250.msrRI }
            if mcr & Serial8250.mcrOUT2 != 0 { lines |= Serial8250.msrDCD }
            return lines
        }

        /// The highest-priority pending, enabled interrupt as its IIR identification bits.
        func pendingSource() -> UInt8? {
            if ier & Serial8250.ierRLSI != 0 && overrun { return Serial8250.iirRLSI }
            if ier & Serial8250.ierRDI != 0 && fifoCount > 0 { return Serial8250.iirRDI }
            if ier & Serial8250.ierTHRI != 0 && thrPending { return Serial8250.iirTHRI }
            if ier & Serial8250.ierMSI != 0 && msrDeltas != 0 { return Serial8250.iirMSI }
            return nil
        }

        /// On a PC, OUT2 gates the UART's interrupt pin onto the bus; loopback forces OUT2's pin inactive.
        var irqLevel: Bool {
            pendingSource() != nil && mcr & Serial8250.mcrOUT2 != 0 && !loopback
        }
    }

    let interrupt: any InterruptLine
    private let output: SerialOutput
    private let onReceiveSpace: (@Sendable () -> Void)?
    let state = Mutex(State())
    private let transmitted = Atomic<UInt64>(0)
    private let received = Atomic<UInt64>(0)

    /// Creates a UART in its power-on state.
    ///
    /// - Parameters:
    ///   - interrupt: the IRQ line (IRQ 4 for COM1), driven only when its level changes.
    ///   - sink: receives every byte the guest transmits: on the vCPU thread with the device lock
    ///     held, or in bursts from the output thread once `startOutputThread` ran.
    ///   - onReceiveSpace: called, without the lock, once the receive FIFO has drained after a
    ///     `receive(_:)` call was refused bytes, so an input thread can wait instead of polling.
    public init(
        interrupt: any InterruptLine,
        sink: any ConsoleSink,
        onReceiveSpace: (@Sendable () -> Void)? = nil
    ) {
        self.interrupt = interrupt
        output = SerialOutput(sink: sink)
        self.onReceiveSpace = onReceiveSpace
    }

    /// From now on transmitted bytes are buffered and handed to the sink by a thread of the UART's
    /// own (`threadStart` runs first on it), a burst at a time, instead of one write per byte on
    /// the vCPU thread.
    public func startOutputThread(threadStart: (@Sendable () -> Void)? = nil) {
        output.start(threadStart: threadStart)
    }

    /// Stops the output thread after writing out what it holds (output is synchronous again).
    public func stopOutputThread() { output.stop() }

    /// Writes out what the guest transmitted so far, on the calling thread (e.g. before the VMM
    /// looks at the console for a panic message).
    public func flushOutput() { output.drain() }

    /// Bytes the guest has transmitted to the sink.
    public var bytesTransmitted: UInt64 { transmitted.load(ordering: .relaxed) }

    /// Bytes accepted into the receive FIFO from the host side.
    public var bytesReceived: UInt64 { received.load(ordering: .relaxed) }

    /// Free space in the receive FIFO right now.
    public var receiveSpace: Int { state.withLock { Self.receiveCapacity - $0.fifoCount } }

    /// Host input: enqueues as many of `bytes` as fit and returns how many were taken.
    ///
    /// Nothing is lost: the caller keeps the rest and retries (see `onReceiveSpace`), so no
    /// overrun is flagged. In loopback mode the serial input is disconnected and nothing is taken.
    public func receive(_ bytes: some Collection<UInt8>) -> Int {
        let taken = state.withLock { s -> Int in
            var taken = 0
            if !s.loopback {
                for byte in bytes {
                    guard s.push(byte) else { break }
                    taken += 1
                }
            }
            if taken < bytes.count { s.producerWaiting = true }
            updateLine(&s)
            return taken
        }
        received.add(UInt64(taken), ordering: .relaxed)
        return taken
    }

    /// Host input on a line without flow control: bytes that do not fit are dropped and flagged
    /// with LSR.OE (and a line-status interrupt), as a real UART overrun. Returns how many were taken.
    public func receiveDroppingOverflow(_ bytes: some Collection<UInt8>) -> Int {
        let taken = state.withLock { s -> Int in
            guard !s.loopback else { return 0 }
            var taken = 0
            for byte in bytes {
                if s.push(byte) { taken += 1 } else { s.overrun = true }
            }
            updateLine(&s)
            return taken
        }
        received.add(UInt64(taken), ordering: .relaxed)
        return taken
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        let notify = state.withLock { s -> Bool in
            for index in 0..<data.count {
                guard let register = byteRegister(offset, index, count: Self.portCount) else {
                    data[index] = 0xFF
                    continue
                }
                data[index] = readRegister(register, &s)
            }
            updateLine(&s)
            return takeSpaceNotification(&s)
        }
        if notify { onReceiveSpace?() }
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        let notify = state.withLock { s -> Bool in
            for index in 0..<data.count {
                guard let register = byteRegister(offset, index, count: Self.portCount) else { continue }
                writeRegister(register, data[index], &s)
            }
            updateLine(&s)
            return takeSpaceNotification(&s)
        }
        if notify { onReceiveSpace?() }
    }

    private func readRegister(_ register: Int, _ s: inout State) -> UInt8 {
        let dlab = s.lcr & Self.lcrDLAB != 0
        switch register {
        case 0:
            if dlab { return s.dll }
            // An empty RBR reads 0 rather than a stale byte; nothing depends on the stale value.
            return s.pop() ?? 0
        case 1:
            return dlab ? s.dlm : s.ier
        case 2:
            // IIR is readable whatever DLAB says (Linux relies on this while probing for EFR).
            let source = s.pendingSource()
            // Reading IIR while it reports THRE is what acknowledges that interrupt.
            if source == Self.iirTHRI { s.thrPending = false }
            return (source ?? Self.iirNoInt) | (s.fifosEnabled ? Self.iirFIFOs : 0)
        case 3:
            return s.lcr
        case 4:
            return s.mcr
        case 5:
            var lsr = Self.lsrTHRE | Self.lsrTEMT
            if s.fifoCount > 0 { lsr |= Self.lsrDR }
            if s.overrun { lsr |= Self.lsrOE }
            s.overrun = false  // error bits clear on read, which also drops the line-status interrupt
            return lsr
        case 6:
            let msr = s.modemLines() | s.msrDeltas
            s.msrDeltas = 0
            return msr
        default:
            return s.scr
        }
    }

    private func writeRegister(_ register: Int, _ value: UInt8, _ s: inout State) {
        let dlab = s.lcr & Self.lcrDLAB != 0
        switch register {
        case 0:
            if dlab { s.dll = value; return }
            if s.loopback {
                // The transmitter is wired to the receiver; a full FIFO loses the byte as an overrun.
                if !s.push(value) { s.overrun = true }
            } else {
                output.put(value)
                transmitted.add(1, ordering: .relaxed)
            }
            // Writing THR clears THRE; the byte leaves at once, so THR is empty again and THRE re-arms.
            s.thrPending = s.ier & Self.ierTHRI != 0
        case 1:
            if dlab { s.dlm = value; return }
            let old = s.ier
            s.ier = value & 0x0F  // bits 7:4 don't exist on a 16550A (Linux probes bit 6 for XScale UARTs)
            if s.ier & Self.ierTHRI == 0 {
                s.thrPending = false
            } else if old & Self.ierTHRI == 0 {
                // ETBEI rising while THR is empty raises THRE at once (Linux's THRE test relies on it).
                s.thrPending = true
            }
        case 2:
            // FCR. Bits other than enable are only honoured with FIFOs enabled; toggling enable clears them.
            let enable = value & 0x01 != 0
            if enable != s.fifosEnabled {
                s.fifosEnabled = enable
                s.clearFIFO()
            } else if enable && value & 0x02 != 0 {
                s.clearFIFO()
            }
        case 3:
            s.lcr = value
        case 4:
            let oldLines = s.modemLines()
            s.mcr = value & 0x1F
            let newLines = s.modemLines()
            let changed = oldLines ^ newLines
            if changed & Self.msrCTS != 0 { s.msrDeltas |= Self.msrDCTS }
            if changed & Self.msrDSR != 0 { s.msrDeltas |= Self.msrDDSR }
            if changed & Self.msrDCD != 0 { s.msrDeltas |= Self.msrDDCD }
            // TERI flags only the trailing edge of RI.
            if oldLines & Self.msrRI != 0 && newLines & Self.msrRI == 0 { s.msrDeltas |= Self.msrTERI }
        case 5, 6:
            break  // LSR and MSR writes are for factory test only
        default:
            s.scr = value
        }
    }

    /// Drives the IRQ line only on a change: a redundant setLevel costs the VMM an ioctl.
    private func updateLine(_ s: inout State) {
        let level = s.irqLevel
        if level != s.lineHigh {
            s.lineHigh = level
            interrupt.setLevel(level)
        }
    }

    private func takeSpaceNotification(_ s: inout State) -> Bool {
        guard s.producerWaiting, s.fifoCount == 0, !s.loopback else { return false }
        s.producerWaiting = false
        return onReceiveSpace != nil
    }
}

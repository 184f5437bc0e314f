// Snapshot state of the legacy devices. Each record starts with a version byte so a later format
// can still read or refuse an older one.

extension Serial8250 {
    /// The UART's registers and receive FIFO.
    public func saveState() -> [UInt8] {
        state.withLock { s in
            var w = StateWriter()
            w.u8(1)
            let ordered = (0..<s.fifoCount).map { s.fifo[(s.fifoHead + $0) % Serial8250.receiveCapacity] }
            w.blob(ordered)
            for value in [s.ier, s.lcr, s.mcr, s.scr, s.dll, s.dlm, s.msrDeltas] { w.u8(value) }
            for value in [s.fifosEnabled, s.overrun, s.thrPending, s.lineHigh] { w.bool(value) }
            return w.bytes
        }
    }

    /// Loads saved UART state and re-drives the IRQ line to match it.
    public func restoreState(_ bytes: [UInt8]) throws(StateError) {
        var r = StateReader(bytes, what: "the serial port")
        guard try r.u8() == 1 else { throw .invalid(what: "the serial port (version)") }
        let fifo = try r.blob(maximum: Serial8250.receiveCapacity)
        var s = State()
        for (index, byte) in fifo.enumerated() { s.fifo[index] = byte }
        s.fifoHead = 0
        s.fifoCount = fifo.count
        s.ier = try r.u8(); s.lcr = try r.u8(); s.mcr = try r.u8(); s.scr = try r.u8()
        s.dll = try r.u8(); s.dlm = try r.u8(); s.msrDeltas = try r.u8()
        s.fifosEnabled = try r.bool(); s.overrun = try r.bool(); s.thrPending = try r.bool(); s.lineHigh = try r.bool()
        try r.finish()
        let level = s.lineHigh
        state.withLock { $0 = s }
        interrupt.setLevel(level)
    }
}

extension I8042 {
    /// Controller RAM, output port and queued replies.
    public func saveState() -> [UInt8] {
        state.withLock { s in
            var w = StateWriter()
            w.u8(1)
            w.blob(s.ram)
            w.u8(s.outputPort)
            w.u32(UInt32(s.output.count))
            for entry in s.output { w.u8(entry.byte); w.bool(entry.aux) }
            w.bool(s.pendingCommand != nil); w.u8(s.pendingCommand ?? 0)
            w.bool(s.lastWriteWasCommand); w.bool(s.keyboardLineHigh); w.bool(s.mouseLineHigh)
            return w.bytes
        }
    }

    /// Loads saved controller state and re-drives its IRQ lines.
    public func restoreState(_ bytes: [UInt8]) throws(StateError) {
        var r = StateReader(bytes, what: "the i8042")
        guard try r.u8() == 1 else { throw .invalid(what: "the i8042 (version)") }
        var s = State()
        let ram = try r.blob(maximum: 32)
        guard ram.count == 32 else { throw .invalid(what: "the i8042 RAM") }
        s.ram = ram
        s.outputPort = try r.u8()
        let count = Int(try r.u32())
        guard count <= I8042.outputCapacity else { throw .invalid(what: "the i8042 output queue") }
        for _ in 0..<count { s.output.append((try r.u8(), try r.bool())) }
        let hasPending = try r.bool()
        let pending = try r.u8()
        s.pendingCommand = hasPending ? pending : nil
        s.lastWriteWasCommand = try r.bool(); s.keyboardLineHigh = try r.bool(); s.mouseLineHigh = try r.bool()
        try r.finish()
        state.withLock { $0 = s }
        keyboardInterrupt?.setLevel(s.keyboardLineHigh)
        mouseInterrupt?.setLevel(s.mouseLineHigh)
    }
}

extension CMOSRTC {
    /// The largest guest-time offset from the host clock a snapshot may carry: 20,000 years.
    static let maximumOffset: Int64 = 20_000 * 366 * 86_400

    /// CMOS RAM, index register and the guest's offset from host time.
    public func saveState() -> [UInt8] {
        state.withLock { s in
            var w = StateWriter()
            w.u8(1)
            w.u8(UInt8(truncatingIfNeeded: s.index))
            w.blob(s.ram)
            w.i64(s.offset)
            return w.bytes
        }
    }

    /// Loads saved CMOS state (a time being set mid-snapshot is dropped; the guest sees host time + offset).
    public func restoreState(_ bytes: [UInt8]) throws(StateError) {
        var r = StateReader(bytes, what: "the CMOS RTC")
        guard try r.u8() == 1 else { throw .invalid(what: "the CMOS RTC (version)") }
        var s = State()
        s.index = Int(try r.u8() & 0x7F)
        let ram = try r.blob(maximum: 128)
        guard ram.count == 128 else { throw .invalid(what: "the CMOS RAM") }
        s.ram = ram
        s.offset = try r.i64()
        // A guest can only set years 0–9999, so a larger offset is corrupt; calendar arithmetic on
        // it would overflow (trap) on the next time read.
        guard (-CMOSRTC.maximumOffset...CMOSRTC.maximumOffset).contains(s.offset) else {
            throw .invalid(what: "the CMOS RTC (time offset \(s.offset) s is out of range)")
        }
        try r.finish()
        state.withLock { $0 = s }
    }
}

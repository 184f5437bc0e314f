import Glibc
import Testing
@testable import Devices

/// Hammers every legacy device with random (seeded) accesses: whatever the guest does, the models
/// must neither trap nor break the invariants drivers poll on.
@Suite struct LegacyFuzzTests {
    @Test(arguments: [UInt64(1), 0xDEAD_BEEF, 0x5EED_2024])
    func randomAccessesNeverCrash(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        let line = FakeLine(), sink = FakeSink()
        let resets = Counter(), exits = Counter()
        let uart = Serial8250(interrupt: line, sink: sink)
        let keyboard = FakeLine(), mouse = FakeLine()
        let i8042 = I8042(onReset: { resets.hit() }, keyboardInterrupt: keyboard, mouseInterrupt: mouse)
        let bareI8042 = I8042(onReset: { resets.hit() })
        let clockSeed = Int64.random(in: -4_000_000_000_000...4_000_000_000_000, using: &random)
        let rtc = CMOSRTC(clock: { clockSeed })
        let debugExit = DebugExit(size: 4, onExit: { exits.hit(Int($0)) })

        let bus = Bus(name: "pio")
        try bus.insert(uart, base: Serial8250.com1Base, length: Serial8250.portCount, name: "com1")
        try i8042.register(on: bus)
        try bus.insert(rtc, base: CMOSRTC.basePort, length: CMOSRTC.portCount, name: "rtc")
        try bus.insert(debugExit, base: DebugExit.defaultPort, length: debugExit.length, name: "exit")
        bus.freeze()
        let targets: [(device: any BusDevice, length: UInt64)] = [
            (uart, 8), (i8042.dataPort, 1), (i8042.commandPort, 1), (bareI8042.dataPort, 1),
            (bareI8042.commandPort, 1), (rtc, 2), (debugExit, 4),
        ]
        let sizes = [1, 2, 4, 8]

        var writes = 0
        for _ in 0..<30_000 {
            let (device, length) = targets.randomElement(using: &random)!
            // Mostly in range, as the bus guarantees, but also the odd wild offset.
            let offset = Bool.random(using: &random) || random.next() % 16 != 0
                ? UInt64.random(in: 0..<length, using: &random)
                : random.next()
            let size = sizes.randomElement(using: &random)!
            var value = random.next()
            if random.next() % 4 == 0 {
                // Bias towards the interesting commands: resets, self-test, CMOS indices.
                value = [0xFE, 0xAA, 0xD1, 0x60, 0x0B, 0x80, 0x10].randomElement(using: &random)!
            }
            withUnsafeMutableBytes(of: &value) { raw in
                let access = UnsafeMutableRawBufferPointer(rebasing: raw[0..<size])
                if Bool.random(using: &random) {
                    device.write(offset: offset, from: UnsafeRawBufferPointer(access))
                    writes += 1
                } else {
                    device.read(offset: offset, into: access)
                }
            }
            if random.next() % 8 == 0 {
                let count = Int(random.next() % 80)
                let bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                _ = Bool.random(using: &random) ? uart.receive(bytes) : uart.receiveDroppingOverflow(bytes)
            }
            // Ports the bus owns also work through the bus itself.
            var byte: UInt8 = 0
            withUnsafeMutableBytes(of: &byte) { _ = bus.read(address: 0x3F8 + random.next() % 8, into: $0) }
        }
        #expect(writes > 0)

        // The invariants drivers depend on survive any sequence.
        #expect(uart.inb(5) & 0x60 == 0x60, "transmitter always empty")
        #expect(uart.inb(2) & 0x30 == 0, "IIR bits 5:4 are always clear on a 16550A")
        #expect(i8042.commandPort.inb(0) & 0x02 == 0, "input buffer never full")
        #expect(bareI8042.commandPort.inb(0) & 0x02 == 0)
        rtc.outb(0, 0x0D)
        #expect(rtc.inb(1) == 0x80)
        #expect(bus.unhandledAccesses == 0)
    }

    @Test func concurrentAccessFromManyThreads() {
        // vCPU threads and the input thread at once: the device locks keep every model consistent.
        let line = FakeLine(), sink = FakeSink()
        let uart = Serial8250(interrupt: line, sink: sink)
        let rtc = CMOSRTC(clock: { 1_700_000_000 })
        let i8042 = I8042(onReset: {}, keyboardInterrupt: FakeLine())
        let threads = (0..<4).map { seed in
            startThread {
                var random = SplitMix64(seed: UInt64(seed))
                for _ in 0..<5_000 {
                    let offset = random.next() % 8
                    if random.next() % 2 == 0 { uart.outb(offset, UInt8(truncatingIfNeeded: random.next())) }
                    else { _ = uart.inb(offset) }
                    _ = uart.receive([UInt8(truncatingIfNeeded: random.next())])
                    rtc.outb(0, UInt8(truncatingIfNeeded: random.next()))
                    _ = rtc.inb(1)
                    i8042.dataPort.outb(0, 0xF2)
                    _ = i8042.dataPort.inb(0)
                }
            }
        }
        for thread in threads { pthread_join(thread, nil) }
        #expect(uart.inb(5) & 0x60 == 0x60)
        #expect(UInt64(sink.output.count) == uart.bytesTransmitted)
    }
}

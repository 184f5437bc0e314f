import Testing
@testable import Devices

@Suite struct DebugExitTests {
    @Test(arguments: [(UInt64(0), Int32(1)), (1, 3), (0x10, 0x21), (0x7F, 0xFF)])
    func byteWriteExitsWithShiftedCode(value: UInt64, code: Int32) {
        let exits = Counter()
        let device = DebugExit(onExit: { exits.hit(Int($0)) })
        #expect(device.length == 1)
        device.outb(0, UInt8(value))
        #expect(exits.count == 1 && exits.lastArgument == Int(code))
    }

    @Test func widerPortsTakeWiderValues() {
        let exits = Counter()
        let word = DebugExit(size: 2, onExit: { exits.hit(Int($0)) })
        #expect(word.length == 2)
        word.write(0, size: 2, value: 0x1234)
        #expect(exits.lastArgument == 0x2469)
        let dword = DebugExit(size: 4, onExit: { exits.hit(Int($0)) })
        dword.write(0, size: 4, value: 0x7FFF_FFFF)
        #expect(exits.lastArgument == -1, "the code is the low 32 bits of (v << 1) | 1")
        #expect(exits.count == 2)
    }

    @Test func readsFloatHighAndDoNotExit() throws {
        let exits = Counter()
        let device = DebugExit(onExit: { _ in exits.hit() })
        #expect(device.read(0, size: 4) == 0xFFFF_FFFF)
        #expect(exits.count == 0)
        let bus = Bus(name: "pio")
        try bus.insert(device, base: DebugExit.defaultPort, length: device.length, name: "debug-exit")
        var value: UInt8 = 0x2A
        withUnsafeBytes(of: &value) { _ = bus.write(address: 0x501, from: $0) }
        #expect(exits.count == 1)
    }
}

import Synchronization
import Testing
@testable import Devices

/// Remembers the last access it saw.
private final class Recorder: BusDevice {
    let last = Mutex<(offset: UInt64, size: Int, value: UInt64)?>(nil)
    let fill: UInt8
    init(fill: UInt8) { self.fill = fill }

    func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        for index in data.indices { data[index] = fill }
        last.withLock { $0 = (offset, data.count, 0) }
    }

    func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        let value = data.loadAccessValue()
        last.withLock { $0 = (offset, data.count, value) }
    }
}

@Suite struct BusTests {
    @Test func overlapsAreRefused() throws {
        let bus = Bus(name: "pio")
        try bus.insert(Recorder(fill: 1), base: 0x3F8, length: 8, name: "com1")
        #expect(throws: BusError.overlap(name: "x", with: "com1")) {
            try bus.insert(Recorder(fill: 2), base: 0x3FF, length: 1, name: "x")
        }
        #expect(throws: BusError.overlap(name: "y", with: "com1")) {
            try bus.insert(Recorder(fill: 2), base: 0x3F0, length: 0x10, name: "y")
        }
        try bus.insert(Recorder(fill: 2), base: 0x3F0, length: 8, name: "adjacent-below")
        try bus.insert(Recorder(fill: 3), base: 0x400, length: 1, name: "adjacent-above")
        #expect(bus.devices.map(\.name) == ["adjacent-below", "com1", "adjacent-above"])
    }

    @Test func emptyOrOverflowingRangesAreRefused() throws {
        let bus = Bus(name: "mmio")
        #expect(throws: BusError.emptyOrOverflowing(name: "empty")) {
            try bus.insert(Recorder(fill: 0), base: 0x1000, length: 0, name: "empty")
        }
        #expect(throws: BusError.emptyOrOverflowing(name: "wrap")) {
            try bus.insert(Recorder(fill: 0), base: UInt64.max, length: 2, name: "wrap")
        }
        try bus.insert(Recorder(fill: 0), base: UInt64.max, length: 1, name: "last-byte")
    }

    @Test func lookupDispatchesWithRelativeOffsets() throws {
        let bus = Bus(name: "pio")
        let devices = (0..<20).map { Recorder(fill: UInt8($0)) }
        for (index, device) in devices.enumerated().shuffled() {
            try bus.insert(device, base: UInt64(index) * 0x10 + 0x100, length: 4, name: "d\(index)")
        }
        bus.freeze()
        for (index, device) in devices.enumerated() {
            var word: UInt16 = 0
            let claimed = withUnsafeMutableBytes(of: &word) { bus.read(address: UInt64(index) * 0x10 + 0x103, into: $0) }
            #expect(claimed)
            #expect(word == UInt16(index) * 0x101)
            #expect(device.last.withLock { $0?.offset } == 3)
            var value: UInt32 = 0xCAFE_0000 | UInt32(index)
            withUnsafeBytes(of: &value) { _ = bus.write(address: UInt64(index) * 0x10 + 0x101, from: $0) }
            #expect(device.last.withLock { $0.map { [$0.offset, UInt64($0.size), $0.value] } }
                == [1, 4, 0xCAFE_0000 | UInt64(index)])
        }
        #expect(bus.unhandledAccesses == 0)
    }

    @Test func unhandledAccessesReadAllOnesAndAreCounted() throws {
        let bus = Bus(name: "pio")
        try bus.insert(Recorder(fill: 0), base: 0x60, length: 1, name: "kbd")
        var value: UInt32 = 0
        let claimed = withUnsafeMutableBytes(of: &value) { bus.read(address: 0x61, into: $0) }
        #expect(!claimed && value == 0xFFFF_FFFF)
        #expect(bus.unhandledAccesses == 1)
        let written = withUnsafeBytes(of: &value) { bus.write(address: 0x5F, from: $0) }
        #expect(!written && bus.unhandledAccesses == 2)
        var byte: UInt8 = 0xAA
        #expect(withUnsafeMutableBytes(of: &byte) { bus.read(address: 0x60, into: $0) })
        #expect(bus.unhandledAccesses == 2)
    }

    @Test func aFrozenBusRefusesDevices() {
        let bus = Bus(name: "pio")
        bus.freeze()
        #expect(throws: BusError.frozen) { try bus.insert(Recorder(fill: 0), base: 0, length: 1, name: "late") }
    }
}

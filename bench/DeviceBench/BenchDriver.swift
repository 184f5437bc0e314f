import Devices
import Glibc
import Memory

/// An interrupt nobody waits for: the benchmark reaps the used ring itself.
final class IgnoredInterrupt: VirtioInterrupt {
    func interruptStatusChanged(pending: UInt32, raised: Bool) {}
}

/// A minimal virtio-mmio driver over real guest memory: the register dance once, then descriptors,
/// avail ring and used ring written and read straight through the host mapping, so the benchmark
/// measures the device's work (queue, chain, backend) and as little driver work as possible.
final class BenchDriver {
    static let queueStride: UInt64 = 0x2_0000
    static let ringBase: UInt64 = 0x10_0000
    /// Data buffers start here (after the rings of up to three queues).
    static let dataBase: UInt64 = 0x20_0000

    struct Ring {
        var size: UInt16
        var desc: UInt64
        var avail: UInt64
        var used: UInt64
        var availIndex: UInt16 = 0
        var lastUsed: UInt16 = 0
    }

    let memory: GuestMemory
    let transport: VirtioMMIOTransport
    let ram: UnsafeMutableRawPointer
    var rings: [Ring] = []

    init(device: any VirtioDevice, ramBytes: UInt64) throws {
        memory = try GuestMemory(layout: [(0, ramBytes)])
        ram = memory.regions[0].host
        transport = try VirtioMMIOTransport(device: device, memory: memory, interrupt: IgnoredInterrupt(), name: "bench",
                                            log: { print("device log: \($0)") })
        try start(queueCount: device.queueMaxSizes.count)
    }

    private func setRegister(_ offset: UInt64, _ value: UInt32) {
        var little = value.littleEndian
        withUnsafeBytes(of: &little) { transport.write(offset: offset, from: $0) }
    }

    private func register(_ offset: UInt64) -> UInt32 {
        var value: UInt32 = 0
        withUnsafeMutableBytes(of: &value) { transport.read(offset: offset, into: $0) }
        return UInt32(littleEndian: value)
    }

    /// Reset, ACKNOWLEDGE, DRIVER, every offered feature, FEATURES_OK, queues, DRIVER_OK.
    private func start(queueCount: Int) throws {
        setRegister(0x70, 0)
        setRegister(0x70, 1)
        setRegister(0x70, 3)
        for select: UInt32 in 0...1 {
            setRegister(0x14, select)
            let offered = register(0x10)
            setRegister(0x24, select)
            setRegister(0x20, offered)
        }
        setRegister(0x70, 11)
        guard register(0x70) & 8 != 0 else { throw BenchError("the device refused FEATURES_OK") }
        for index in 0..<queueCount {
            setRegister(0x30, UInt32(index))
            let size = UInt16(min(256, register(0x34)))
            let base = BenchDriver.ringBase + UInt64(index) * BenchDriver.queueStride
            let ring = Ring(size: size, desc: base, avail: base + 0x8000, used: base + 0x1_0000)
            memset(ram + Int(base), 0, Int(BenchDriver.queueStride))
            setRegister(0x38, UInt32(size))
            setRegister(0x80, UInt32(truncatingIfNeeded: ring.desc)); setRegister(0x84, 0)
            setRegister(0x90, UInt32(truncatingIfNeeded: ring.avail)); setRegister(0x94, 0)
            setRegister(0xA0, UInt32(truncatingIfNeeded: ring.used)); setRegister(0xA4, 0)
            setRegister(0x44, 1)
            rings.append(ring)
        }
        setRegister(0x70, 15)
        guard register(0x70) & 4 != 0 else { throw BenchError("the device did not reach DRIVER_OK") }
    }

    @inline(__always)
    func store<T: FixedWidthInteger>(_ value: T, at address: UInt64) {
        ram.storeBytes(of: value.littleEndian, toByteOffset: Int(address), as: T.self)
    }

    @inline(__always)
    func load<T: FixedWidthInteger>(_: T.Type, at address: UInt64) -> T {
        T(littleEndian: ram.loadUnaligned(fromByteOffset: Int(address), as: T.self))
    }

    /// Writes descriptor `index` of queue `queue`: `writable` buffers are device-written.
    func setDescriptor(_ queue: Int, _ index: UInt16, address: UInt64, length: UInt32, writable: Bool, next: UInt16?) {
        let base = rings[queue].desc + 16 * UInt64(index)
        store(address, at: base)
        store(length, at: base + 8)
        store(UInt16(writable ? 2 : 0) | UInt16(next == nil ? 0 : 1), at: base + 12)
        store(next ?? 0, at: base + 14)
    }

    /// Makes the chain at `head` available (the idx is published by `notify`).
    func publish(_ queue: Int, head: UInt16) {
        let ring = rings[queue]
        store(head, at: ring.avail + 4 + 2 * UInt64(ring.availIndex % ring.size))
        rings[queue].availIndex &+= 1
    }

    /// Publishes avail idx, rings QueueNotify, and lets the device work on this thread.
    func notify(_ queue: Int) {
        store(rings[queue].availIndex, at: rings[queue].avail + 2)
        setRegister(0x50, UInt32(queue))
        transport.processNotifications()
    }

    /// Used buffers since the last call, and the sum of their written lengths.
    func reap(_ queue: Int) -> (count: Int, bytes: Int) {
        let ring = rings[queue]
        let usedIndex = load(UInt16.self, at: ring.used + 2)
        var count = 0, bytes = 0
        var position = ring.lastUsed
        while position != usedIndex {
            bytes += Int(load(UInt32.self, at: ring.used + 4 + 8 * UInt64(position % ring.size) + 4))
            position &+= 1
            count += 1
        }
        rings[queue].lastUsed = usedIndex
        return (count, bytes)
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

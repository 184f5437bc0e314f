import Glibc
import Memory
import Synchronization
@testable import Devices

/// Records every InterruptStatus change the transport reports.
final class RecordingInterrupt: VirtioInterrupt {
    private let state = Mutex<(raises: Int, pending: UInt32)>((0, 0))

    func interruptStatusChanged(pending: UInt32, raised: Bool) {
        state.withLock { $0 = ($0.raises + (raised ? 1 : 0), pending) }
    }

    var raises: Int { state.withLock { $0.raises } }
    var pending: UInt32 { state.withLock { $0.pending } }
}

/// Collects log lines instead of printing them.
final class LogCollector: Sendable {
    private let lines = Mutex<[String]>([])
    func log(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
}

/// One buffer of a chain the test driver builds: where, how long, and who writes it.
struct TestBuffer {
    var address: UInt64
    var length: UInt32
    var writable: Bool

    static func readable(_ address: UInt64, _ length: UInt32) -> TestBuffer { TestBuffer(address: address, length: length, writable: false) }
    static func writable(_ address: UInt64, _ length: UInt32) -> TestBuffer { TestBuffer(address: address, length: length, writable: true) }
}

/// A raw descriptor, for building hostile tables by hand.
struct RawDescriptor {
    var address: UInt64
    var length: UInt32
    var flags: UInt16
    var next: UInt16
}

/// A simulated virtio-mmio driver over in-memory guest RAM: does the register dance, builds chains
/// in its rings, notifies, and reads the used ring back.
final class VirtioTestDriver {
    /// Where queue `n`'s rings live: descriptor table, avail ring, used ring, 64 KiB per queue.
    static let ringBase: UInt64 = 0x10000
    static let ringStride: UInt64 = 0x10000
    /// Data buffers live here; everything else is guard memory the device must never touch.
    static let dataBase: UInt64 = 0x80000
    static let dataSize: UInt64 = 0x40000
    static let guardByte: UInt8 = 0xA5

    struct Queue {
        var size: UInt16
        var desc: UInt64
        var avail: UInt64
        var used: UInt64
        var nextDescriptor: UInt16 = 0
        var availIndex: UInt16 = 0
        var lastUsed: UInt16 = 0
    }

    let memory: GuestMemory
    let device: any VirtioDevice
    let transport: VirtioMMIOTransport
    let interrupt = RecordingInterrupt()
    let logs = LogCollector()
    var queues: [Queue] = []

    init(device: any VirtioDevice, layout: [(base: UInt64, size: UInt64)] = [(0, 0x100000)]) throws {
        memory = try GuestMemory(layout: layout)
        self.device = device
        let logs = logs
        transport = try VirtioMMIOTransport(device: device, memory: memory, interrupt: interrupt, name: "test",
                                            log: { logs.log($0) })
        fillGuard()
    }

    // MARK: registers

    func reg(_ offset: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: transport.read(offset, size: 4)) }
    func setReg(_ offset: UInt64, _ value: UInt32) { transport.write(offset, size: 4, value: UInt64(value)) }

    var status: UInt32 { reg(0x70) }
    var offeredFeatures: UInt64 {
        setReg(0x14, 0)
        let low = UInt64(reg(0x10))
        setReg(0x14, 1)
        return low | UInt64(reg(0x10)) << 32
    }

    /// Reset, ACK, DRIVER, features, FEATURES_OK, queue setup, DRIVER_OK. Returns false (and stops)
    /// when the device refused FEATURES_OK. `features` nil acks everything offered.
    @discardableResult
    func initialize(features: UInt64? = nil, queueSize: UInt16 = 16, driverOK: Bool = true) -> Bool {
        setReg(0x70, 0)
        setReg(0x70, VirtioStatus.acknowledge)
        setReg(0x70, VirtioStatus.acknowledge | VirtioStatus.driver)
        let accepted = features ?? offeredFeatures
        setReg(0x24, 0); setReg(0x20, UInt32(truncatingIfNeeded: accepted))
        setReg(0x24, 1); setReg(0x20, UInt32(truncatingIfNeeded: accepted >> 32))
        setReg(0x70, VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK)
        guard status & VirtioStatus.featuresOK != 0 else { return false }
        queues = []
        for index in 0..<device.queueMaxSizes.count {
            setReg(0x30, UInt32(index))
            let size = min(queueSize, UInt16(reg(0x34)))
            let base = VirtioTestDriver.ringBase + UInt64(index) * VirtioTestDriver.ringStride
            let queue = Queue(size: size, desc: base, avail: base + 0x4000, used: base + 0x8000)
            try! memory.zero(at: base, count: Int(VirtioTestDriver.ringStride))
            setQueue(index, queue)
            queues.append(queue)
        }
        if driverOK {
            setReg(0x70, VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK | VirtioStatus.driverOK)
        }
        return true
    }

    /// Programs queue `index`'s registers (without touching status).
    func setQueue(_ index: Int, _ queue: Queue, ready: Bool = true) {
        setReg(0x30, UInt32(index))
        setReg(0x38, UInt32(queue.size))
        setReg(0x80, UInt32(truncatingIfNeeded: queue.desc)); setReg(0x84, UInt32(truncatingIfNeeded: queue.desc >> 32))
        setReg(0x90, UInt32(truncatingIfNeeded: queue.avail)); setReg(0x94, UInt32(truncatingIfNeeded: queue.avail >> 32))
        setReg(0xA0, UInt32(truncatingIfNeeded: queue.used)); setReg(0xA4, UInt32(truncatingIfNeeded: queue.used >> 32))
        setReg(0x44, ready ? 1 : 0)
    }

    // MARK: rings

    /// Writes descriptor `index` of queue `queue`'s table.
    func writeDescriptor(_ queue: Int, _ index: UInt16, _ d: RawDescriptor, table: UInt64? = nil) {
        let base = (table ?? queues[queue].desc) + 16 * UInt64(index)
        try! memory.write(d.address, at: base)
        try! memory.write(d.length, at: base + 8)
        try! memory.write(d.flags, at: base + 12)
        try! memory.write(d.next, at: base + 14)
    }

    /// Builds a chain from `buffers` (direct, or through an indirect table at `indirectTable`) and
    /// makes it available. Returns the head.
    @discardableResult
    func post(_ queue: Int, _ buffers: [TestBuffer], indirectTable: UInt64? = nil) -> UInt16 {
        var q = queues[queue]
        let head = q.nextDescriptor % q.size
        if let table = indirectTable {
            for (position, buffer) in buffers.enumerated() {
                let last = position == buffers.count - 1
                writeDescriptor(queue, UInt16(position), RawDescriptor(
                    address: buffer.address, length: buffer.length,
                    flags: (buffer.writable ? 2 : 0) | (last ? 0 : 1), next: last ? 0 : UInt16(position + 1)), table: table)
            }
            writeDescriptor(queue, head, RawDescriptor(address: table, length: UInt32(16 * buffers.count), flags: 4, next: 0))
            q.nextDescriptor &+= 1
        } else {
            for (position, buffer) in buffers.enumerated() {
                let index = (q.nextDescriptor &+ UInt16(position)) % q.size
                let last = position == buffers.count - 1
                writeDescriptor(queue, index, RawDescriptor(
                    address: buffer.address, length: buffer.length,
                    flags: (buffer.writable ? 2 : 0) | (last ? 0 : 1), next: (index + 1) % q.size))
            }
            q.nextDescriptor &+= UInt16(buffers.count)
        }
        queues[queue] = q
        publish(queue, head: head)
        return head
    }

    /// Puts `head` in the avail ring and bumps avail idx.
    func publish(_ queue: Int, head: UInt16) {
        var q = queues[queue]
        try! memory.write(head, at: q.avail + 4 + 2 * UInt64(q.availIndex % q.size))
        q.availIndex &+= 1
        try! memory.write(q.availIndex, at: q.avail + 2)
        queues[queue] = q
    }

    /// Sets avail idx to anything (hostile drivers).
    func setAvailIndex(_ queue: Int, _ value: UInt16) {
        queues[queue].availIndex = value
        try! memory.write(value, at: queues[queue].avail + 2)
    }

    /// QueueNotify through the MMIO register, then lets the device work on this thread.
    func kick(_ queue: Int) {
        setReg(0x50, UInt32(queue))
        transport.processNotifications()
    }

    /// Used entries since the last call.
    func takeUsed(_ queue: Int) -> [(id: UInt32, length: UInt32)] {
        var q = queues[queue]
        let usedIndex: UInt16 = try! memory.read(at: q.used + 2)
        var result: [(UInt32, UInt32)] = []
        while q.lastUsed != usedIndex {
            let slot = q.used + 4 + 8 * UInt64(q.lastUsed % q.size)
            result.append((try! memory.read(at: slot), try! memory.read(at: slot + 4)))
            q.lastUsed &+= 1
        }
        queues[queue] = q
        return result
    }

    func usedIndex(_ queue: Int) -> UInt16 { try! memory.read(at: queues[queue].used + 2) }
    func setUsedEvent(_ queue: Int, _ value: UInt16) {
        try! memory.write(value, at: queues[queue].avail + 4 + 2 * UInt64(queues[queue].size))
    }
    func availEvent(_ queue: Int) -> UInt16 {
        try! memory.read(at: queues[queue].used + 4 + 8 * UInt64(queues[queue].size))
    }
    func setAvailFlags(_ queue: Int, _ flags: UInt16) { try! memory.write(flags, at: queues[queue].avail) }

    /// Acknowledges whatever InterruptStatus holds.
    func acknowledgeInterrupts() { setReg(0x64, reg(0x60)) }

    var needsReset: Bool { status & VirtioStatus.needsReset != 0 }

    // MARK: guard memory

    /// Fills all RAM outside the ring and data areas with `guardByte`.
    func fillGuard() {
        for region in memory.regions {
            for (start, end) in guardRanges(in: region) {
                try! memory.write([UInt8](repeating: VirtioTestDriver.guardByte, count: Int(end - start)), at: start)
            }
        }
    }

    /// True when no guard byte changed.
    func guardIntact() -> Bool {
        for region in memory.regions {
            for (start, end) in guardRanges(in: region) {
                let bytes = try! memory.readBytes(at: start, count: Int(end - start))
                if bytes.contains(where: { $0 != VirtioTestDriver.guardByte }) { return false }
            }
        }
        return true
    }

    private func guardRanges(in region: GuestMemoryRegion) -> [(UInt64, UInt64)] {
        let rings = (VirtioTestDriver.ringBase, VirtioTestDriver.ringBase + 4 * VirtioTestDriver.ringStride)
        let data = (VirtioTestDriver.dataBase, VirtioTestDriver.dataBase + VirtioTestDriver.dataSize)
        var ranges: [(UInt64, UInt64)] = []
        var cursor = region.guestBase
        for hole in [rings, data] {
            if cursor < hole.0 { ranges.append((cursor, min(hole.0, region.guestEnd))) }
            cursor = max(cursor, hole.1)
        }
        if cursor < region.guestEnd { ranges.append((cursor, region.guestEnd)) }
        return ranges.filter { $0.0 < $0.1 }
    }
}

/// A temporary file of `size` bytes, removed on deinit.
final class TemporaryFile {
    let path: String

    init(size: Int, pattern: ((Int) -> UInt8)? = nil) {
        var template = Array("/tmp/vireo-blk-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        precondition(fd >= 0, "mkstemp failed")
        path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let bytes = (0..<size).map { pattern?($0) ?? 0 }
        bytes.withUnsafeBytes { raw in precondition(Glibc.write(fd, raw.baseAddress, size) == size) }
        close(fd)
    }

    deinit { unlink(path) }

    func read(at offset: Int, count: Int) -> [UInt8] {
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: count)
        let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        precondition(got == count)
        return bytes
    }
}

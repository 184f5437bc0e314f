import Glibc
import Memory
import Testing
@testable import Devices

/// Hostile queues against net, vsock, balloon and console: thousands of seeded random chains on
/// every queue (bad addresses and lengths, loops, stray indirect tables, readable/writable mixed up)
/// with random contents (headers, page frame numbers, frames), interleaved with backend events and
/// resets. The device must never crash or hang, never touch guest memory outside the rings and the
/// data window, log exactly one line per violation, and keep working after the driver resets it.
@Suite struct NewDeviceFuzzTests {
    static let queueSize: UInt16 = 16
    /// Where shaped contents go, and where chains often start.
    static let headerSlot = VirtioTestDriver.dataBase + 0x30000

    /// A random chain on `queue`: benign (readable then writable, inside the data window) or hostile.
    static func chain(_ driver: VirtioTestDriver, queue: Int, _ random: inout SplitMix64, writable: Bool?) -> UInt16 {
        let size = Int(driver.queues[queue].size)
        let hostile = random.next() % 3 == 0
        let head = UInt16(random.next() % UInt64(size))
        let count = 1 + Int(random.next() % 4)
        let useIndirect = random.next() % 6 == 0
        let table = useIndirect ? VirtioTestDriver.dataBase + 0x38000 + (random.next() % 8) * 0x400 : driver.queues[queue].desc
        let entries = useIndirect ? count : size
        var positions: [UInt16] = [useIndirect ? 0 : head]
        for step in 1..<max(count, 1) {
            positions.append(hostile ? UInt16(random.next() % UInt64(entries)) : UInt16((Int(positions[0]) + step) % entries))
        }
        let firstWritable: Int
        switch writable {
        case true?: firstWritable = 0
        case false?: firstWritable = count
        case nil: firstWritable = Int(random.next() % UInt64(count + 1))
        }
        for (step, position) in positions.enumerated() {
            let last = step == count - 1
            var flags: UInt16 = last ? 0 : 1
            if hostile ? random.next() % 2 == 0 : step >= firstWritable { flags |= 2 }
            var next = last ? UInt16(random.next() % 4) : positions[step + 1]
            // Benign buffers stay below the indirect tables at +0x38000.
            var address = VirtioTestDriver.dataBase + random.next() % 0x30000
            var length = UInt32(1 + random.next() % 0x2000)
            if step == 0 && random.next() % 2 == 0 {
                // The shaped request the last scribble left (a header, PFNs, a frame).
                address = headerSlot
                length = [10, 12, 44, 26, 64, 48, 100][Int(random.next() % 7)]
            }
            if hostile {
                if random.next() % 20 == 0 { flags |= 4 }
                if random.next() % 10 == 0 { next = UInt16(truncatingIfNeeded: random.next()) }
                address = VirtioFuzzTests.address(&random)
                length = VirtioFuzzTests.length(&random)
                if address < VirtioFuzzTests.ramEnd && address >= VirtioFuzzTests.ramEnd - 16 {
                    length = max(length, UInt32(VirtioFuzzTests.ramEnd - address) + 1)
                }
            }
            driver.writeDescriptor(queue, position, RawDescriptor(address: address, length: length, flags: flags, next: next), table: table)
        }
        if useIndirect {
            var length = UInt32(16 * count)
            if hostile && random.next() % 4 == 0 { length = UInt32(random.next() % 0x10000) }
            driver.writeDescriptor(queue, head, RawDescriptor(address: table, length: length, flags: 4, next: 0))
        }
        return head
    }

    /// Random bytes in the data window, sometimes shaped like what the device expects.
    static func scribble(_ driver: VirtioTestDriver, _ random: inout SplitMix64, shape: ([UInt8], inout SplitMix64) -> [UInt8]) {
        var bytes = (0..<128).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        if random.next() % 4 == 0 {
            try? driver.memory.write(bytes, at: VirtioTestDriver.dataBase + (random.next() % 0x30000 & ~0xF))
        } else {
            bytes = shape(bytes, &random)
            try? driver.memory.write(bytes, at: headerSlot)
        }
    }

    /// Runs `iterations` rounds against `driver`; `action` may add device-specific events.
    static func run(_ driver: VirtioTestDriver, seed: UInt64, iterations: Int, writableQueues: [Bool?], releasesPages: Bool = false,
                    shape: @escaping ([UInt8], inout SplitMix64) -> [UInt8],
                    action: (inout SplitMix64) -> Void) {
        var random = SplitMix64(seed: seed)
        func setUp() {
            var features = VirtioFeature.version1 | (driver.offeredFeatures & ~(VirtioFeature.eventIndex | VirtioFeature.indirectDescriptors | VirtioFeature.version1))
            if random.next() % 2 == 0 { features |= VirtioFeature.eventIndex }
            if random.next() % 4 != 0 { features |= VirtioFeature.indirectDescriptors }
            #expect(driver.initialize(features: features, queueSize: queueSize))
        }
        setUp()
        var resets = 0
        for iteration in 0..<iterations {
            let queue = Int(random.next() % UInt64(writableQueues.count))
            if random.next() % 3 == 0 { scribble(driver, &random, shape: shape) }
            if random.next() % 60 == 0 {
                let q = driver.queues[queue]
                driver.setAvailIndex(queue, q.availIndex &+ queueSize &+ 1 &+ UInt16(random.next() % 100))
            } else {
                let head = chain(driver, queue: queue, &random, writable: writableQueues[queue])
                driver.publish(queue, head: head)
            }
            driver.kick(queue)
            _ = driver.takeUsed(queue)
            action(&random)
            for source in driver.device.eventSources.indices where random.next() % 4 == 0 {
                driver.transport.serviceEvent(source)
            }
            if driver.needsReset || random.next() % 200 == 0 {
                if driver.needsReset { resets += 1 }
                setUp()
            }
            if iteration % 200 == 0 { #expect(guardIntact(driver, releasesPages), "iteration \(iteration)") }
        }
        #expect(guardIntact(driver, releasesPages))
        #expect(driver.transport.violationCount == resets, "every violation reset the device once")
        #expect(driver.logs.all.count == (0..<driver.transport.violationCount).filter { VirtioMMIOTransport.logsViolation($0 + 1) }.count,
                "log lines rate-limited: the first few, then powers of two")
        #expect(resets > 10, "the generator produces violations (\(resets))")
    }

    /// Guard memory untouched; for the balloon a guard page may also read as released (all zero):
    /// giving up any page of its RAM is the guest's right.
    static func guardIntact(_ driver: VirtioTestDriver, _ releasesPages: Bool) -> Bool {
        guard releasesPages else { return driver.guardIntact() }
        for page in stride(from: UInt64(0), to: VirtioFuzzTests.ramEnd, by: 4096) {
            let inRings = page >= VirtioTestDriver.ringBase && page < VirtioTestDriver.ringBase + 4 * VirtioTestDriver.ringStride
            let inData = page >= VirtioTestDriver.dataBase && page < VirtioTestDriver.dataBase + VirtioTestDriver.dataSize
            if inRings || inData { continue }
            let bytes = try! driver.memory.readBytes(at: page, count: 4096)
            if !(bytes.allSatisfy { $0 == VirtioTestDriver.guardByte } || bytes.allSatisfy { $0 == 0 }) { return false }
        }
        return true
    }

    @Test(arguments: [UInt64(3), 0xFEED])
    func net(seed: UInt64) throws {
        let backend = try FakeNetBackend()
        let net = try VirtioNet(backend: backend, mac: [2, 0, 0, 0, 0, 9], log: { _ in })
        let driver = try VirtioTestDriver(device: net)
        NewDeviceFuzzTests.run(driver, seed: seed, iterations: 2500, writableQueues: [true, false], shape: { bytes, random in
            var shaped = bytes
            for index in 0..<12 { shaped[index] = random.next() % 4 == 0 ? UInt8(truncatingIfNeeded: random.next()) : 0 }
            return shaped
        }) { random in
            if random.next() % 3 == 0 {
                backend.deliver(ethernetFrame(source: UInt8(truncatingIfNeeded: random.next()), payload: Int(random.next() % 3000)))
            }
            backend.blockSends = random.next() % 5 == 0
        }
        let statistics = net.statistics
        #expect(statistics.rxPackets > 0 && statistics.txPackets > 0, "\(statistics)")
    }

    @Test(arguments: [UInt64(11), 0xABCDEF])
    func vsock(seed: UInt64) throws {
        let path = "/tmp/vireo-vsock-fuzz-\(getpid())-\(seed).sock"
        let listeners = try [5000, 5001].map { try UnixSockets.listen(path: "\(path)_\($0)", backlog: 512) }
        defer {
            for (index, fd) in listeners.enumerated() { close(fd); unlink("\(path)_\(5000 + index)") }
            unlink(path)
        }
        let device = try VirtioVsock(guestCID: 3, socketPath: path, listener: try UnixSockets.listen(path: path))
        let driver = try VirtioTestDriver(device: device)
        var clients: [Int32] = []
        defer { for fd in clients { close(fd) } }
        NewDeviceFuzzTests.run(driver, seed: seed, iterations: 2500, writableQueues: [true, false, true], shape: { bytes, random in
            var header = VsockHeader(op: VsockHeader.Operation(rawValue: UInt16(random.next() % 9)) ?? .readWrite,
                                     sourceCID: random.next() % 8 == 0 ? random.next() : 3, destinationCID: 2,
                                     sourcePort: UInt32(random.next() % 4), destinationPort: [5000, 5001, 6000, 1 << 30][Int(random.next() % 4)],
                                     length: UInt32(random.next() % 8 == 0 ? random.next() % 0x20000 : random.next() % 64),
                                     flags: UInt32(random.next() % 4), bufferAllocation: UInt32(truncatingIfNeeded: random.next()),
                                     forwardCount: UInt32(truncatingIfNeeded: random.next()))
            if random.next() % 10 == 0 { header.type = UInt16(truncatingIfNeeded: random.next()) }
            return header.bytes + Array(bytes[44...])
        }) { random in
            if random.next() % 20 == 0, clients.count < 64, let fd = try? UnixSockets.connect(path: path) {
                clients.append(fd)
                let line = ["CONNECT \(random.next() % 4)\n", "CONNECT x\n", "GARBAGE", "CONNECT 99999999999\n"][Int(random.next() % 4)]
                _ = line.withCString { send(fd, $0, strlen($0), Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
            }
            if random.next() % 10 == 0, let fd = clients.randomElement(using: &random) {
                var junk = [UInt8](repeating: 0x41, count: Int(random.next() % 5000))
                _ = junk.withUnsafeMutableBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
            }
            if random.next() % 10 == 0 {
                for listener in listeners {
                    let fd = accept4Compat(listener)
                    if fd >= 0 { clients.append(fd) }
                }
            }
        }
        #expect(device.statistics.resetsSent > 0, "\(device.statistics)")
    }

    @Test(arguments: [UInt64(5), 0x5EED])
    func balloon(seed: UInt64) throws {
        let device = try VirtioBalloon(guestMemoryBytes: VirtioFuzzTests.ramEnd)
        let driver = try VirtioTestDriver(device: device)
        NewDeviceFuzzTests.run(driver, seed: seed, iterations: 2500, writableQueues: [false, false, false], releasesPages: true, shape: { bytes, random in
            // Page frames: mostly data-window pages (0x80–0xB7), sometimes anything.
            var shaped = bytes
            for index in stride(from: 0, to: shaped.count, by: 4) {
                let pfn = random.next() % 6 == 0 ? UInt32(truncatingIfNeeded: random.next()) : UInt32(0x80 + random.next() % 0x38)
                shaped[index] = UInt8(pfn & 0xFF); shaped[index + 1] = UInt8(pfn >> 8 & 0xFF)
                shaped[index + 2] = UInt8(pfn >> 16 & 0xFF); shaped[index + 3] = UInt8(pfn >> 24)
            }
            return shaped
        }) { random in
            if random.next() % 10 == 0 { device.requestStatistics() }
            if random.next() % 20 == 0 { device.setTarget(pages: random.next() % 300) }
        }
        #expect(device.statistics.releasedPages > 0 && device.statistics.statisticsUpdates > 0, "\(device.statistics)")
    }

    @Test(arguments: [UInt64(8)])
    func console(seed: UInt64) throws {
        let file = TemporaryFile(size: 0)
        let device = try VirtioConsole(backend: .file(open(file.path, O_WRONLY | O_APPEND)))
        let driver = try VirtioTestDriver(device: device)
        NewDeviceFuzzTests.run(driver, seed: seed, iterations: 2000, writableQueues: [true, false], shape: { bytes, _ in bytes }) { _ in }
    }
}

/// accept(2) that never blocks (the listeners here are non-blocking).
func accept4Compat(_ listener: Int32) -> Int32 {
    let fd = accept(listener, nil, nil)
    if fd >= 0 { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
    return fd
}

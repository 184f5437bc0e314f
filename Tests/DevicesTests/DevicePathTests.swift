import Glibc
import Memory
import Synchronization
import Testing
@testable import Devices

/// Issue 16's device paths: the lazy chain walker (and what a guest that rewrites a chain it handed
/// over gets), vectored block and network I/O past the iovec batch size, the serial output thread
/// and the irqfd line.
@Suite struct DevicePathTests {
    let data = VirtioTestDriver.dataBase

    // MARK: the chain walker

    /// A queue over `memory` with one chain posted by hand; returns the queue and the popped chain.
    private func popOne(_ memory: GuestMemory, descriptors: [RawDescriptor]) throws -> (VirtQueue, DescriptorChain) {
        let layout = VirtQueueLayout(size: 16, descriptorTable: 0x1000, availableRing: 0x2000, usedRing: 0x3000)
        try memory.zero(at: 0x1000, count: 0x3000)
        for (index, d) in descriptors.enumerated() {
            let base = 0x1000 + 16 * UInt64(index)
            try memory.write(d.address, at: base)
            try memory.write(d.length, at: base + 8)
            try memory.write(d.flags, at: base + 12)
            try memory.write(d.next, at: base + 14)
        }
        try memory.write(UInt16(0), at: 0x2004)  // ring[0] = head 0
        try memory.write(UInt16(1), at: 0x2002)  // avail idx
        let queue = try VirtQueue(index: 0, layout: layout, memory: memory, features: VirtioFeature.version1)
        let chain = try #require(try queue.popAvailable())
        return (queue, chain)
    }

    @Test func aDescriptorAcrossAdjacentRegionsIsTwoPieces() throws {
        let memory = try GuestMemory(layout: [(0, 0x10_0000), (0x10_0000, 0x10_0000)])
        let (_, chain) = try popOne(memory, descriptors: [
            RawDescriptor(address: 0x8000, length: 16, flags: 1, next: 1),
            RawDescriptor(address: 0xF_FF00, length: 0x200, flags: 2, next: 0),
        ])
        #expect(chain.readableLength == 16 && chain.writableLength == 0x200)
        #expect(try chain.segments(writable: true, memory: memory) == [GuestSegment(address: 0xF_FF00, length: 0x100),
                                                                      GuestSegment(address: 0x10_0000, length: 0x100)])
        let pattern = (0..<0x200).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        #expect(try chain.writeBytes(pattern, to: memory, offset: 0) == 0x200)
        #expect(try memory.readBytes(at: 0xF_FF00, count: 0x100) + memory.readBytes(at: 0x10_0000, count: 0x100) == pattern)
        // Clipped at both ends, across the boundary.
        #expect(try chain.writeBytes([1, 2, 3, 4], to: memory, offset: 0xFE) == 4)
        #expect(try memory.readBytes(at: 0xF_FFFE, count: 2) + memory.readBytes(at: 0x10_0000, count: 2) == [1, 2, 3, 4])
        #expect(try chain.writeBytes([9, 9], to: memory, offset: 0x1FF) == 1, "only what the chain holds")
    }

    @Test func aChainRewrittenAfterPopIsADeviceErrorNeverAnEscape() throws {
        let memory = try GuestMemory(layout: [(0, 0x10_0000)])
        let (_, chain) = try popOne(memory, descriptors: [RawDescriptor(address: 0x8000, length: 64, flags: 2, next: 0)])
        var buffer = [UInt8](repeating: 0xAB, count: 64)
        #expect(try chain.writeBytes(buffer, to: memory, offset: 0) == 64)

        // The guest points the descriptor past the end of RAM after handing it over.
        try memory.write(UInt64(0xF_FFF0), at: 0x1000)
        #expect(throws: VirtioError.self) { try chain.writeBytes(buffer, to: memory, offset: 0) }
        // ... or makes it a loop, or an indirect table, or readable after writable.
        try memory.write(UInt64(0x8000), at: 0x1000)
        try memory.write(UInt16(2 | 1), at: 0x1000 + 12)  // NEXT to itself
        // (A walk stops once it has the bytes it needs: the loop shows once it passes the table size.)
        #expect(try chain.writeBytes(buffer, to: memory, offset: 0) == 64)
        #expect(throws: VirtioError.chainTooLong(queue: 0, limit: 16)) { try chain.writeBytes(buffer, to: memory, offset: 16 * 64) }
        try memory.write(UInt16(4), at: 0x1000 + 12)
        #expect(throws: VirtioError.self) { try chain.writeBytes(buffer, to: memory, offset: 0) }
        // Made shorter: the copy stops where the chain now ends.
        try memory.write(UInt16(2), at: 0x1000 + 12)
        try memory.write(UInt32(8), at: 0x1000 + 8)
        buffer = [UInt8](repeating: 0xCD, count: 64)
        #expect(try chain.writeBytes(buffer, to: memory, offset: 0) == 8)
        #expect(try memory.readBytes(at: 0x8008, count: 56) == [UInt8](repeating: 0xAB, count: 56))
        // Devices index what `readBytes` returns (vsock headers, balloon PFNs, discard ranges): it
        // still returns the validated length, the part the guest took away as zeroes.
        let readable = try popOne(memory, descriptors: [RawDescriptor(address: 0x9000, length: 48, flags: 0, next: 0)]).1
        try memory.write([UInt8](repeating: 0x11, count: 48), at: 0x9000)
        try memory.write(UInt32(4), at: 0x1000 + 8)
        #expect(try readable.readBytes(from: memory, offset: 0, count: 44) == [0x11, 0x11, 0x11, 0x11] + [UInt8](repeating: 0, count: 40))
    }

    @Test func gatherStopsWhenTheVectorsAreFull() throws {
        let memory = try GuestMemory(layout: [(0, 0x10_0000)])
        let descriptors = (0..<8).map { RawDescriptor(address: 0x8000 + UInt64($0) * 0x100, length: 16, flags: $0 == 7 ? 2 : 2 | 1, next: UInt16($0 + 1)) }
        let (_, chain) = try popOne(memory, descriptors: descriptors)
        let vectors = UnsafeMutableBufferPointer<iovec>.allocate(capacity: 3)
        defer { vectors.deallocate() }
        let all = try chain.gather(writable: true, from: 8, length: 128, memory: memory, into: vectors)
        #expect(all.count == 3 && all.bytes == 8 + 16 + 16, "three pieces, the first one clipped")
        #expect(vectors[0].iov_base == memory.regions[0].host + 0x8008 && vectors[0].iov_len == 8)
    }

    // MARK: vectored block I/O

    func blockDriver(sectors: Int) throws -> (VirtioTestDriver, VirtioBlock, TemporaryFile) {
        let file = TemporaryFile(size: sectors * 512) { UInt8(truncatingIfNeeded: $0 &* 13 &+ $0 / 512) }
        let block = VirtioBlock(backend: try FileBlockBackend(path: file.path), serial: "paths")
        let driver = try VirtioTestDriver(device: block)
        #expect(driver.initialize())
        return (driver, block, file)
    }

    /// A request whose data is `pieces` separate 512-byte buffers (more than one preadv's worth), through an indirect table.
    @Test(arguments: [false, true])
    func requestsInMoreSegmentsThanOneBatchMoveEveryByte(write: Bool) throws {
        let pieces = VirtioBlock.vectorCapacity + 36
        let (driver, block, file) = try blockDriver(sectors: 256)
        let header = data, status = data + 0x3F000, payload = data + 0x1000
        try driver.memory.write(UInt32(write ? 1 : 0), at: header)
        try driver.memory.write(UInt32(0), at: header + 4)
        try driver.memory.write(UInt64(8), at: header + 8)
        // Every other 512-byte slot, so no two pieces touch.
        let buffers = (0..<pieces).map { payload + UInt64($0) * 1024 }
        let pattern = (0..<pieces * 512).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 5) }
        if write {
            for (index, address) in buffers.enumerated() { try driver.memory.write(Array(pattern[index * 512..<(index + 1) * 512]), at: address) }
        }
        let middle = buffers.map { write ? TestBuffer.readable($0, 512) : TestBuffer.writable($0, 512) }
        driver.post(0, [.readable(header, 16)] + middle + [.writable(status, 1)], indirectTable: data + 0x30000)
        driver.kick(0)
        let used = driver.takeUsed(0)
        let statusByte = try driver.memory.read(UInt8.self, at: status)
        #expect(used.count == 1 && statusByte == 0)
        let image = file.read(at: 0, count: 256 * 512)
        if write {
            #expect(Array(image[4096..<4096 + pieces * 512]) == pattern)
            #expect(block.statistics.bytesWritten == UInt64(pieces * 512))
        } else {
            var got: [UInt8] = []
            for address in buffers { got += try driver.memory.readBytes(at: address, count: 512) }
            #expect(got == Array(image[4096..<4096 + pieces * 512]))
            #expect(used.first?.length == UInt32(pieces * 512 + 1))
        }
        #expect(!driver.needsReset && driver.guardIntact())
    }

    // MARK: vectored network I/O

    private func streamNet() throws -> (VirtioTestDriver, VirtioNet, Int32) {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        let net = try VirtioNet(backend: StreamNetBackend(fd: fds[0]), mac: [2, 0, 0, 0, 0, 9], log: { _ in })
        let driver = try VirtioTestDriver(device: net)
        #expect(driver.initialize())
        return (driver, net, fds[1])
    }

    @Test func streamFramesGoStraightBetweenTheSocketAndScatteredGuestBuffers() throws {
        let (driver, net, peer) = try streamNet()
        defer { close(peer) }
        let frame = ethernetFrame(source: 3, payload: 300)
        // Transmit: header, then the frame in three pieces.
        try driver.memory.write([UInt8](repeating: 0, count: 12), at: data)
        try driver.memory.write(Array(frame[0..<20]), at: data + 0x100)
        try driver.memory.write(Array(frame[20..<200]), at: data + 0x300)
        try driver.memory.write(Array(frame[200...]), at: data + 0x600)
        driver.post(VirtioNet.transmitQueue, [.readable(data, 12), .readable(data + 0x100, 20), .readable(data + 0x300, 180),
                                              .readable(data + 0x600, UInt32(frame.count - 200))])
        driver.kick(VirtioNet.transmitQueue)
        var wire = [UInt8](repeating: 0, count: 4 + frame.count)
        #expect(recv(peer, &wire, wire.count, Int32(MSG_DONTWAIT)) == wire.count)
        #expect(Array(wire[0..<4]) == [0, 0, 1, 58] && Array(wire[4...]) == frame)

        // Receive into a buffer of header + three pieces.
        let back = ethernetFrame(source: 4, payload: 500, fill: 0x77)
        let prefixed = withUnsafeBytes(of: UInt32(back.count).bigEndian) { Array($0) } + back
        #expect(send(peer, prefixed, prefixed.count, 0) == prefixed.count)
        let rx = data + 0x10000
        driver.post(VirtioNet.receiveQueue, [.writable(rx, 12), .writable(rx + 0x1000, 100), .writable(rx + 0x2000, 100),
                                             .writable(rx + 0x3000, 1400)])
        driver.kick(VirtioNet.receiveQueue)
        let used = driver.takeUsed(VirtioNet.receiveQueue)
        #expect(used.count == 1 && used.first?.length == UInt32(12 + back.count))
        let got = try driver.memory.readBytes(at: rx + 0x1000, count: 100) + driver.memory.readBytes(at: rx + 0x2000, count: 100)
            + driver.memory.readBytes(at: rx + 0x3000, count: back.count - 200)
        #expect(got == back)
        #expect(try driver.memory.readBytes(at: rx, count: 12) == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0])
        #expect(net.statistics.txPackets == 1 && net.statistics.rxPackets == 1)
        #expect(!driver.needsReset && driver.guardIntact())
    }

    /// Buffers in more pieces than the device's iovec list: the frame still arrives, through a copy.
    @Test func framesInMorePiecesThanTheVectorsTakeTheCopyPath() throws {
        let (driver, net, peer) = try streamNet()
        defer { close(peer) }
        let pieces = NetVectors.capacity + 6
        let frame = ethernetFrame(source: 5, payload: pieces * 16 - 14)  // exactly `pieces` × 16 bytes
        try driver.memory.write([UInt8](repeating: 0, count: 12), at: data)
        for index in 0..<pieces { try driver.memory.write(Array(frame[index * 16..<(index + 1) * 16]), at: data + 0x100 + UInt64(index) * 32) }
        driver.post(VirtioNet.transmitQueue, [.readable(data, 12)] + (0..<pieces).map { .readable(data + 0x100 + UInt64($0) * 32, 16) },
                    indirectTable: data + 0x30000)
        driver.kick(VirtioNet.transmitQueue)
        var wire = [UInt8](repeating: 0, count: 4 + frame.count)
        #expect(recv(peer, &wire, wire.count, Int32(MSG_DONTWAIT)) == wire.count)
        #expect(Array(wire[4...]) == frame)

        let prefixed = withUnsafeBytes(of: UInt32(frame.count).bigEndian) { Array($0) } + frame
        #expect(send(peer, prefixed, prefixed.count, 0) == prefixed.count)
        let rx = data + 0x10000
        driver.post(VirtioNet.receiveQueue, [.writable(rx, 12)] + (0..<pieces).map { .writable(rx + 0x100 + UInt64($0) * 32, 16) },
                    indirectTable: data + 0x34000)
        driver.kick(VirtioNet.receiveQueue)
        #expect(driver.takeUsed(VirtioNet.receiveQueue).first?.length == UInt32(12 + frame.count))
        var got: [UInt8] = []
        for index in 0..<pieces { got += try driver.memory.readBytes(at: rx + 0x100 + UInt64(index) * 32, count: 16) }
        #expect(got == frame)
        #expect(net.statistics.txPackets == 1 && net.statistics.rxPackets == 1 && !driver.needsReset)
    }

    // MARK: serial output thread, irqfd line

    /// A sink whose first call blocks until released, recording every call.
    final class GatedSink: ConsoleSink, @unchecked Sendable {
        let calls = Mutex<[[UInt8]]>([])
        let entered = EventFD.make(), release = EventFD.make()
        func consoleOutput(_ bytes: UnsafeRawBufferPointer) {
            let first = calls.withLock { $0.isEmpty }
            if first {
                entered.signal()
                release.wait(milliseconds: 10_000)
            }
            calls.withLock { $0.append(Array(bytes)) }
        }
    }

    @Test func bufferedOutputComesInBurstsInOrderAndStopDrainsIt() throws {
        let sink = GatedSink()
        let serial = Serial8250(interrupt: FakeLine(), sink: sink)
        serial.startOutputThread()
        serial.outb(0, 0x41)
        #expect(sink.entered.wait(milliseconds: 10_000) == 1, "the output thread took the first byte")
        // While the sink is busy the guest keeps writing: no byte is written on this thread.
        let text = Array("hello from the guest\n".utf8)
        for byte in text { serial.outb(0, byte) }
        #expect(sink.calls.withLock { $0.isEmpty })
        sink.release.signal()
        serial.flushOutput()
        #expect(sink.calls.withLock { $0 } == [[0x41], text], "one burst for everything written meanwhile")
        serial.outb(0, 0x42)
        serial.stopOutputThread()
        #expect(sink.calls.withLock { $0.flatMap { $0 } } == [0x41] + text + [0x42])
        serial.outb(0, 0x43)  // stopped: straight to the sink
        #expect(sink.calls.withLock { $0.last } == [0x43])
        #expect(serial.bytesTransmitted == UInt64(text.count + 3))
    }

    @Test func aFullBufferMakesTheWriterWaitNotDrop() throws {
        let sink = GatedSink()
        let serial = Serial8250(interrupt: FakeLine(), sink: sink)
        serial.startOutputThread()
        serial.outb(0, 0)
        #expect(sink.entered.wait(milliseconds: 10_000) == 1)
        let total = SerialOutput.capacity * 2 + 100
        let done = EventFD.make()
        let writer = startThread {
            for index in 0..<total { serial.outb(0, UInt8(truncatingIfNeeded: index)) }
            done.signal()
        }
        defer { pthread_join(writer, nil) }
        #expect(done.wait(milliseconds: 300) == 0, "the writer waits while the buffer is full")
        sink.release.signal()
        #expect(done.wait(milliseconds: 10_000) == 1)
        serial.stopOutputThread()
        let all = sink.calls.withLock { $0.flatMap { $0 } }
        #expect(all == [0] + (0..<total).map { UInt8(truncatingIfNeeded: $0) })
    }

    @Test func vsockHeadersEncodeAndDecodeOnTheStackAsInArrays() {
        let header = VsockHeader(op: .readWrite, sourceCID: 0x1122_3344_5566_7788, destinationCID: 2, sourcePort: 0xA0B0_C0D0,
                                 destinationPort: 5000, length: 4096, flags: 3, bufferAllocation: 262_144, forwardCount: 0xFFFF_FFFE)
        var wire = VsockHeader.emptyWire
        let stored = withUnsafeMutableBytes(of: &wire) { raw -> [UInt8] in
            header.store(into: raw)
            return Array(raw[0..<VsockHeader.size])
        }
        #expect(stored == header.bytes)
        #expect(withUnsafeBytes(of: &wire) { VsockHeader(wire: $0) } == header)
        #expect(VsockHeader(bytes: stored) == header)
    }

    @Test func irqfdLineSignalsRisingEdgesOnly() throws {
        let line = try IRQFDLine()
        line.setLevel(true)
        line.setLevel(true)
        #expect(line.eventFD.consume() == 1)
        line.setLevel(false)
        #expect(line.eventFD.consume() == 0)
        line.setLevel(true)
        #expect(line.eventFD.consume() == 1)
    }
}

extension EventFD {
    /// An eventfd for tests (they cannot run without one).
    static func make() -> EventFD { try! EventFD() }
}

import Glibc
import Synchronization
import Testing
@testable import Devices

/// A simulated guest vsock driver (rx/tx/event queues) around VirtioVsock and a real Unix socket.
final class VsockHarness {
    static let cid: UInt64 = 42
    static let queueSize: UInt16 = 64
    static let counter = Atomic<Int>(0)
    let path: String
    let device: VirtioVsock
    let driver: VirtioTestDriver
    var slots: [UInt16: Int] = [:]
    var freeSlots = Array(0..<12)
    let txArea = VirtioTestDriver.dataBase
    var extraFiles: [String] = []

    init(bufferSlots: Int = 8) throws {
        path = "/tmp/vireo-vsock-\(getpid())-\(VsockHarness.counter.add(1, ordering: .relaxed).newValue).sock"
        let listener = try UnixSockets.listen(path: path)
        device = try VirtioVsock(guestCID: VsockHarness.cid, socketPath: path, listener: listener)
        driver = try VirtioTestDriver(device: device)
        #expect(driver.initialize(queueSize: VsockHarness.queueSize))
        postBuffers(bufferSlots)
    }

    deinit {
        unlink(path)
        for file in extraFiles { unlink(file) }
    }

    func slotAddress(_ slot: Int) -> UInt64 { VirtioTestDriver.dataBase + 0x10000 + UInt64(slot) * 0x1100 }

    /// Posts `count` receive buffers shaped as Linux 6.1 does: a 44-byte header and a 4 KiB buffer.
    func postBuffers(_ count: Int) {
        for _ in 0..<count {
            let slot = freeSlots.removeFirst()
            let head = driver.post(VirtioVsock.receiveQueue, [.writable(slotAddress(slot), 44), .writable(slotAddress(slot) + 44, 4096)])
            slots[head] = slot
        }
        driver.kick(VirtioVsock.receiveQueue)
    }

    /// Packets the device put in receive buffers since the last call (their buffers are recycled).
    func received() throws -> [(header: VsockHeader, payload: [UInt8])] {
        var result: [(VsockHeader, [UInt8])] = []
        for used in driver.takeUsed(VirtioVsock.receiveQueue) {
            let removed = slots.removeValue(forKey: UInt16(used.id))
            let slot = try #require(removed)
            let bytes = try driver.memory.readBytes(at: slotAddress(slot), count: Int(used.length))
            let header = VsockHeader(bytes: bytes)
            #expect(Int(header.length) == bytes.count - 44, "used length is header + payload")
            result.append((header, Array(bytes[44...])))
            freeSlots.append(slot)
        }
        return result
    }

    /// One guest → host packet through the transmit queue.
    func send(_ op: VsockHeader.Operation, source: UInt32, destination: UInt32, payload: [UInt8] = [], flags: UInt32 = 0,
              bufferAllocation: UInt32 = 262_144, forwardCount: UInt32 = 0, sourceCID: UInt64 = VsockHarness.cid) throws {
        let header = VsockHeader(op: op, sourceCID: sourceCID, destinationCID: 2, sourcePort: source, destinationPort: destination,
                                 length: UInt32(payload.count), flags: flags, bufferAllocation: bufferAllocation,
                                 forwardCount: forwardCount)
        try driver.memory.write(header.bytes, at: txArea)
        var buffers: [TestBuffer] = [.readable(txArea, 44)]
        if !payload.isEmpty {
            try driver.memory.write(payload, at: txArea + 0x100)
            buffers.append(.readable(txArea + 0x100, UInt32(payload.count)))
        }
        driver.post(VirtioVsock.transmitQueue, buffers)
        driver.kick(VirtioVsock.transmitQueue)
        #expect(driver.takeUsed(VirtioVsock.transmitQueue).count == 1)
    }

    /// The worker's job for the host side: accept, read, write.
    func pump() { driver.transport.serviceEvent(0) }

    /// A host client connected to the device's socket.
    func hostConnect() throws -> Int32 {
        let fd = try UnixSockets.connect(path: path)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    /// A host listener at `PATH_port`.
    func hostListen(port: UInt32) throws -> Int32 {
        let file = "\(path)_\(port)"
        extraFiles.append(file)
        let fd = try UnixSockets.listen(path: file)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return fd
    }
}

func writeString(_ fd: Int32, _ text: String) {
    var bytes = Array(text.utf8)
    bytes.withUnsafeMutableBytes { precondition(write(fd, $0.baseAddress, $0.count) == $0.count) }
}

/// Reads what is there (up to `count` bytes; waits up to the socket's timeout for the first).
func readSome(_ fd: Int32, _ count: Int = 65536) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    let got = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    return got > 0 ? Array(bytes[0..<got]) : []
}

@Suite(.serialized) struct VirtioVsockTests {
    @Test func configSpaceHoldsTheCID() throws {
        let h = try VsockHarness()
        #expect(h.driver.transport.read(0x100, size: 8) == VsockHarness.cid)
        #expect(h.driver.transport.read(0x008, size: 4) == 19)
        #expect(h.driver.offeredFeatures & 0x3 == 0, "stream only: no SEQPACKET")
    }

    @Test func hostInitiatedConnectSendReceiveShutdown() throws {
        let h = try VsockHarness()
        let client = try h.hostConnect()
        defer { close(client) }
        writeString(client, "CONNECT 1234\n")
        h.pump()
        var packets = try h.received()
        let request = try #require(packets.first?.header)
        #expect(packets.count == 1)
        #expect(request.operation == .request && request.sourceCID == 2 && request.destinationCID == VsockHarness.cid)
        #expect(request.destinationPort == 1234 && request.sourcePort >= 1 << 30)
        let hostPort = request.sourcePort
        h.postBuffers(1)

        // The guest accepts: the client reads OK <port>.
        try h.send(.response, source: 1234, destination: hostPort)
        #expect(String(decoding: readSome(client), as: UTF8.self) == "OK \(hostPort)\n")

        // host → guest
        writeString(client, "hello guest")
        h.pump()
        packets = try h.received()
        #expect(packets.count == 1 && packets[0].header.operation == .readWrite)
        #expect(String(decoding: packets[0].payload, as: UTF8.self) == "hello guest")
        #expect(packets[0].header.sourcePort == hostPort && packets[0].header.destinationPort == 1234)
        #expect(packets[0].header.bufferAllocation == VirtioVsock.bufferSize)
        h.postBuffers(1)

        // guest → host
        try h.send(.readWrite, source: 1234, destination: hostPort, payload: Array("hello host".utf8))
        #expect(String(decoding: readSome(client), as: UTF8.self) == "hello host")

        // The guest closes: the client sees EOF and the guest gets its RST.
        try h.send(.shutdown, source: 1234, destination: hostPort, flags: 3)
        #expect(readSome(client).isEmpty)
        packets = try h.received()
        #expect(packets.map { $0.header.operation } == [.reset])
        let stats = h.device.statistics
        #expect(stats.hostInitiated == 1 && stats.connections == 0 && stats.bytesToGuest == 11 && stats.bytesFromGuest == 10)
        #expect(!h.driver.needsReset && h.driver.guardIntact())
    }

    @Test func hostConnectToAPortNobodyListensOnIsClosed() throws {
        let h = try VsockHarness()
        let client = try h.hostConnect()
        defer { close(client) }
        writeString(client, "CONNECT 99\n")
        h.pump()
        let request = try #require(try h.received().first?.header)
        try h.send(.reset, source: 99, destination: request.sourcePort)
        #expect(readSome(client).isEmpty, "closed without OK")
        #expect(h.device.statistics.resetsReceived == 1 && h.device.statistics.connections == 0)
    }

    @Test func guestInitiatedConnectSendReceiveShutdown() throws {
        let h = try VsockHarness()
        let listener = try h.hostListen(port: 5000)
        defer { close(listener) }
        try h.send(.request, source: 40000, destination: 5000)
        var packets = try h.received()
        #expect(packets.count == 1 && packets[0].header.operation == .response)
        #expect(packets[0].header.sourcePort == 5000 && packets[0].header.destinationPort == 40000)
        h.postBuffers(1)
        let server = accept(listener, nil, nil)
        defer { close(server) }
        #expect(server >= 0)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(server, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        try h.send(.readWrite, source: 40000, destination: 5000, payload: Array("ping".utf8))
        #expect(readSome(server) == Array("ping".utf8))
        writeString(server, "pong")
        h.pump()
        packets = try h.received()
        #expect(packets.count == 1 && packets[0].payload == Array("pong".utf8))
        h.postBuffers(1)

        // The host closes: the guest hears SHUTDOWN(SEND), closes too, and gets RST.
        shutdown(server, Int32(SHUT_WR))
        h.pump()
        packets = try h.received()
        #expect(packets.count == 1 && packets[0].header.operation == .shutdown && packets[0].header.flags == VsockHeader.shutdownSend)
        h.postBuffers(1)
        try h.send(.shutdown, source: 40000, destination: 5000, flags: 3)
        packets = try h.received()
        #expect(packets.map { $0.header.operation } == [.reset])
        #expect(readSome(server).isEmpty)
        #expect(h.device.statistics.guestInitiated == 1 && h.device.statistics.connections == 0)
    }

    @Test func unknownPortsAndConnectionsGetReset() throws {
        let h = try VsockHarness()
        try h.send(.request, source: 1, destination: 6000)                             // nobody at PATH_6000
        try h.send(.readWrite, source: 2, destination: 7000, payload: [1, 2, 3])       // no such connection
        try h.send(.creditRequest, source: 3, destination: 7000)
        try h.send(.reset, source: 4, destination: 7000)                              // never answered
        var bad = VsockHeader(op: .request, sourceCID: VsockHarness.cid, destinationCID: 2, sourcePort: 5, destinationPort: 8000)
        bad.type = 2                                                                    // SEQPACKET: not offered
        try h.driver.memory.write(bad.bytes, at: h.txArea)
        h.driver.post(VirtioVsock.transmitQueue, [.readable(h.txArea, 44)])
        h.driver.kick(VirtioVsock.transmitQueue)
        #expect(h.driver.takeUsed(VirtioVsock.transmitQueue).count == 1)
        try h.send(.request, source: 6, destination: 9000, sourceCID: 77)               // spoofed source: dropped
        let packets = try h.received()
        #expect(packets.map { $0.header.operation } == [.reset, .reset, .reset, .reset])
        #expect(packets.map { $0.header.destinationPort } == [1, 2, 3, 5])
        #expect(packets.allSatisfy { $0.header.sourceCID == 2 && $0.header.destinationCID == VsockHarness.cid })
        #expect(h.device.statistics.dropped == 1 && h.device.statistics.resetsSent == 4)
        #expect(!h.driver.needsReset)
    }

    @Test func creditLimitsWhatTheHostSendsAndTheGuestMaySend() throws {
        let h = try VsockHarness()
        let listener = try h.hostListen(port: 5001)
        defer { close(listener) }
        // The guest has only 10 bytes of receive space.
        try h.send(.request, source: 50, destination: 5001, bufferAllocation: 10, forwardCount: 0)
        _ = try h.received()
        h.postBuffers(1)
        let server = accept(listener, nil, nil)
        defer { close(server) }
        writeString(server, "0123456789abcdefghij")
        h.pump()
        var packets = try h.received()
        #expect(packets.count == 1 && packets[0].payload == Array("0123456789".utf8), "exactly the credit")
        h.postBuffers(1)
        h.pump()
        #expect(try h.received().isEmpty, "no credit, nothing more")
        // The guest's application read 4 bytes: a credit update lets 4 more through.
        try h.send(.creditUpdate, source: 50, destination: 5001, bufferAllocation: 10, forwardCount: 4)
        packets = try h.received()
        #expect(packets.count == 1 && packets[0].payload == Array("abcd".utf8))
        h.postBuffers(1)
        // A CREDIT_REQUEST is answered with our fwd_cnt and buf_alloc.
        try h.send(.readWrite, source: 50, destination: 5001, payload: [UInt8](repeating: 7, count: 100), bufferAllocation: 10, forwardCount: 4)
        _ = readSome(server, 100)
        try h.send(.creditRequest, source: 50, destination: 5001, bufferAllocation: 10, forwardCount: 4)
        packets = try h.received()
        #expect(packets.count == 1 && packets[0].header.operation == .creditUpdate)
        #expect(packets[0].header.forwardCount == 100 && packets[0].header.bufferAllocation == VirtioVsock.bufferSize)
        h.postBuffers(1)
    }

    @Test func aGuestThatIgnoresOurCreditIsReset() throws {
        let h = try VsockHarness()
        let listener = try h.hostListen(port: 5002)
        defer { close(listener) }
        try h.send(.request, source: 60, destination: 5002)
        _ = try h.received()
        h.postBuffers(1)
        let server = accept(listener, nil, nil)
        defer { close(server) }
        var size: Int32 = 4096
        setsockopt(server, SOL_SOCKET, SO_RCVBUF, &size, 4)
        // Nobody reads on the host: the device buffers up to buf_alloc, then the guest has overrun it.
        let chunk = [UInt8](repeating: 0x33, count: 60000)
        var sent = 0
        while sent <= Int(VirtioVsock.bufferSize) + 200_000 && h.device.statistics.connections == 1 {
            try h.send(.readWrite, source: 60, destination: 5002, payload: chunk)
            sent += chunk.count
        }
        #expect(h.device.statistics.connections == 0, "reset after \(sent) bytes")
        let packets = try h.received()
        #expect(packets.last?.header.operation == .reset)
        #expect(sent > Int(VirtioVsock.bufferSize), "the advertised buffer itself was honoured")
    }

    @Test func slowHostGetsEverythingAndCreditUpdatesFlow() throws {
        let h = try VsockHarness()
        let listener = try h.hostListen(port: 5003)
        defer { close(listener) }
        try h.send(.request, source: 70, destination: 5003)
        _ = try h.received()
        h.postBuffers(1)
        let server = accept(listener, nil, nil)
        defer { close(server) }
        var size: Int32 = 4096
        setsockopt(server, SOL_SOCKET, SO_RCVBUF, &size, 4)
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(server, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        // The guest sends 200 KB within its credit; the host reads slowly.
        var expected: [UInt8] = []
        for index in 0..<50 {
            let payload = [UInt8](repeating: UInt8(index), count: 4000)
            expected += payload
            try h.send(.readWrite, source: 70, destination: 5003, payload: payload)
        }
        var got: [UInt8] = []
        var creditUpdates = 0
        for _ in 0..<2000 where got.count < expected.count {
            got += readSome(server, 8192)
            h.pump()  // writable: flush what the device buffered
            for packet in try h.received() where packet.header.operation == .creditUpdate { creditUpdates += 1 }
            h.postBuffers(h.freeSlots.count)
        }
        #expect(got == expected)
        #expect(creditUpdates >= 1, "forwarded bytes are reported back")
    }

    @Test func packetsWaitForReceiveBuffers() throws {
        let h = try VsockHarness(bufferSlots: 0)
        try h.send(.request, source: 1, destination: 6001)
        try h.send(.request, source: 2, destination: 6001)
        #expect(try h.received().isEmpty)
        #expect(h.device.statistics.receiveWaits >= 1)
        h.postBuffers(2)
        #expect(try h.received().map { $0.header.destinationPort } == [1, 2])
    }

    @Test func driverResetClosesConnectionsAndWaitingClientsAreAskedAgain() throws {
        let h = try VsockHarness()
        let listener = try h.hostListen(port: 5004)
        defer { close(listener) }
        try h.send(.request, source: 80, destination: 5004)
        _ = try h.received()
        let server = accept(listener, nil, nil)
        defer { close(server) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(server, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let client = try h.hostConnect()
        defer { close(client) }
        writeString(client, "CONNECT 22\n")
        h.pump()
        #expect(try h.received().first?.header.operation == .request)
        h.driver.setReg(0x70, 0)  // reset
        #expect(readSome(server).isEmpty, "the guest's connection is gone")
        #expect(h.driver.initialize(queueSize: VsockHarness.queueSize))
        h.slots = [:]
        h.freeSlots = Array(0..<12)
        h.postBuffers(2)
        h.pump()
        let again = try h.received()
        #expect(again.count == 1 && again.first?.header.operation == .request && again.first?.header.destinationPort == 22)
    }

    @Test func malformedTransmitIsADeviceError() throws {
        let h = try VsockHarness()
        h.driver.post(VirtioVsock.transmitQueue, [.readable(h.txArea, 20)])
        h.driver.kick(VirtioVsock.transmitQueue)
        #expect(h.driver.needsReset)
    }
}

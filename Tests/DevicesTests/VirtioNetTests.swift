import Glibc
import Synchronization
import Testing
import VireoTestSupport
@testable import Devices

/// A backend in memory: frames to deliver, frames sent, and a switch that makes sends block.
final class FakeNetBackend: NetBackend, @unchecked Sendable {
    let event: EventFD
    var fd: Int32 { event.fd }
    var inbound: [[UInt8]] = []
    var sent: [[UInt8]] = []
    var blockSends = false
    var closed = false

    init() throws { event = try EventFD() }

    func deliver(_ frame: [UInt8]) {
        inbound.append(frame)
        event.signal()
    }

    func receive(into buffer: UnsafeMutableRawBufferPointer) -> NetReceiveResult {
        guard !inbound.isEmpty else { return closed ? .closed : .wouldBlock }
        let frame = inbound.removeFirst()
        frame.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: frame.count) }
        return .frame(frame.count)
    }

    func send(_ frame: UnsafeRawBufferPointer) -> NetSendResult {
        if blockSends { return .wouldBlock }
        sent.append(Array(frame))
        return .sent
    }
}

/// An Ethernet frame: broadcast destination, the given source, an IPv4 ethertype and `payload` bytes.
func ethernetFrame(source: UInt8, payload: Int, fill: UInt8 = 0x5A) -> [UInt8] {
    [UInt8](repeating: 0xFF, count: 6) + [0x52, 0x54, 0, 0, 0, source] + [0x08, 0x00]
        + [UInt8](repeating: fill, count: payload)
}

/// virtio-net through the simulated driver: config, TX to the backend, RX from it with backpressure.
@Suite struct VirtioNetTests {
    let data = VirtioTestDriver.dataBase
    static let rx = 0, tx = 1

    func makeDriver(features: UInt64? = nil) throws -> (VirtioTestDriver, VirtioNet, FakeNetBackend) {
        let backend = try FakeNetBackend()
        let logs = LogCollector()
        let net = try VirtioNet(backend: backend, mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56], log: { logs.log($0) })
        let driver = try VirtioTestDriver(device: net)
        #expect(driver.initialize(features: features))
        return (driver, net, backend)
    }

    /// Puts a 12-byte header and `frame` in the data window and posts them as one TX chain.
    func transmit(_ driver: VirtioTestDriver, _ frame: [UInt8], header: [UInt8]? = nil, at offset: UInt64 = 0, split: Bool = true) throws {
        let base = data + offset
        try driver.memory.write(header ?? [UInt8](repeating: 0, count: 12), at: base)
        try driver.memory.write(frame, at: base + 0x100)
        if split {
            driver.post(VirtioNetTests.tx, [.readable(base, 12), .readable(base + 0x100, UInt32(frame.count))])
        } else {
            try driver.memory.write(frame, at: base + 12)
            driver.post(VirtioNetTests.tx, [.readable(base, UInt32(12 + frame.count))])
        }
    }

    /// Posts a receive buffer of `length` bytes at data + 0x10000 + slot * 0x800.
    func postReceive(_ driver: VirtioTestDriver, slot: Int, length: UInt32 = 1526) {
        driver.post(VirtioNetTests.rx, [.writable(data + 0x10000 + UInt64(slot) * 0x800, length)])
    }

    func received(_ driver: VirtioTestDriver, slot: Int, length: Int) throws -> (header: [UInt8], frame: [UInt8]) {
        let bytes = try driver.memory.readBytes(at: data + 0x10000 + UInt64(slot) * 0x800, count: length)
        return (Array(bytes[0..<12]), Array(bytes[12...]))
    }

    @Test func configSpaceAndFeatures() throws {
        let (driver, net, _) = try makeDriver()
        let mac = (0..<6).map { UInt8(driver.transport.read(0x100 + UInt64($0), size: 1)) }
        #expect(mac == net.mac)
        #expect(driver.transport.read(0x106, size: 2) == 1, "link up")
        #expect(driver.transport.read(0x10A, size: 2) == 1500, "mtu")
        let features = driver.offeredFeatures
        #expect(features & VirtioNet.featureMAC != 0)
        #expect(features & VirtioNet.featureStatus != 0)
        #expect(features & VirtioNet.featureMTU != 0)
        // No offloads: CSUM (0), GUEST_CSUM (1), GUEST_TSO4 (7), HOST_TSO4 (11), MRG_RXBUF (15), CTRL_VQ (17).
        for bit in [0, 1, 7, 8, 10, 11, 12, 14, 15, 17] { #expect(features & (1 << UInt64(bit)) == 0, "bit \(bit)") }
        #expect(driver.transport.read(0x008, size: 4) == 1, "device type")
    }

    @Test func transmitReachesTheBackend() throws {
        let (driver, net, backend) = try makeDriver()
        let frames = [ethernetFrame(source: 1, payload: 46), ethernetFrame(source: 2, payload: 1486, fill: 0xA1)]
        try transmit(driver, frames[0])
        try transmit(driver, frames[1], at: 0x1000, split: false)
        driver.kick(VirtioNetTests.tx)
        #expect(backend.sent == frames)
        let used = driver.takeUsed(VirtioNetTests.tx)
        #expect(used.count == 2 && used.allSatisfy { $0.length == 0 })
        #expect(net.statistics.txPackets == 2 && net.statistics.txBytes == UInt64(frames[0].count + frames[1].count))
        #expect(!driver.needsReset && driver.guardIntact())
    }

    @Test func malformedTransmitsAreDroppedNotSent() throws {
        let (driver, net, backend) = try makeDriver()
        var checksum = [UInt8](repeating: 0, count: 12)
        checksum[0] = 1  // NEEDS_CSUM, never negotiated
        try transmit(driver, ethernetFrame(source: 1, payload: 50), header: checksum)
        var gso = [UInt8](repeating: 0, count: 12)
        gso[1] = 1  // GSO_TCPV4
        try transmit(driver, ethernetFrame(source: 2, payload: 50), header: gso, at: 0x1000)
        driver.post(VirtioNetTests.tx, [.readable(data + 0x2000, 8)])   // shorter than a header
        try transmit(driver, [1, 2, 3], at: 0x3000)                       // shorter than an Ethernet header
        try transmit(driver, ethernetFrame(source: 9, payload: 20), at: 0x4000)
        driver.kick(VirtioNetTests.tx)
        #expect(backend.sent == [ethernetFrame(source: 9, payload: 20)])
        #expect(driver.takeUsed(VirtioNetTests.tx).count == 5, "every buffer goes back")
        #expect(net.statistics.txDropped == 4)
        #expect(!driver.needsReset)
    }

    @Test func receiveDeliversWithHeaderAndWaitsForBuffers() throws {
        let (driver, net, backend) = try makeDriver()
        let frames = (0..<3).map { ethernetFrame(source: UInt8($0), payload: 60 + $0 * 100, fill: UInt8(0x10 + $0)) }
        for frame in frames { backend.deliver(frame) }
        postReceive(driver, slot: 0)
        driver.kick(VirtioNetTests.rx)                     // the refill notification
        driver.transport.serviceEvent(0)                   // the backend's edge
        var used = driver.takeUsed(VirtioNetTests.rx)
        #expect(used.count == 1 && used.first?.length == UInt32(12 + frames[0].count))
        let first = try received(driver, slot: 0, length: 12 + frames[0].count)
        #expect(first.header == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], "flags 0, GSO none, num_buffers 1")
        #expect(first.frame == frames[0])
        // No buffer left: the next frame waits (nothing dropped) until the driver refills.
        #expect(net.statistics.rxWaits >= 1)
        #expect(net.statistics.rxDropped == 0)
        #expect(backend.inbound.count == 1, "only one frame is taken from the backend while waiting")
        postReceive(driver, slot: 1)
        postReceive(driver, slot: 2)
        driver.kick(VirtioNetTests.rx)
        used = driver.takeUsed(VirtioNetTests.rx)
        #expect(used.count == 2)
        #expect(try received(driver, slot: 1, length: 12 + frames[1].count).frame == frames[1])
        #expect(try received(driver, slot: 2, length: 12 + frames[2].count).frame == frames[2])
        #expect(net.statistics.rxPackets == 3 && net.statistics.rxDropped == 0)
        #expect(driver.interrupt.raises >= 1 && !driver.needsReset && driver.guardIntact())
    }

    @Test func oversizedFramesAreDroppedAndTheBufferReused() throws {
        let (driver, net, backend) = try makeDriver()
        backend.deliver(ethernetFrame(source: 1, payload: 3000))
        backend.deliver(ethernetFrame(source: 2, payload: 100))
        postReceive(driver, slot: 0)
        driver.kick(VirtioNetTests.rx)
        let used = driver.takeUsed(VirtioNetTests.rx)
        #expect(used.count == 1 && used.first?.length == UInt32(12 + 114))
        #expect(try received(driver, slot: 0, length: 12 + 114).frame == ethernetFrame(source: 2, payload: 100))
        #expect(net.statistics.rxDropped == 1)
    }

    @Test func receiveBufferTooSmallForAHeaderIsADeviceError() throws {
        let (driver, _, backend) = try makeDriver()
        backend.deliver(ethernetFrame(source: 1, payload: 100))
        postReceive(driver, slot: 0, length: 8)
        driver.kick(VirtioNetTests.rx)
        #expect(driver.needsReset)
        #expect(driver.logs.all.count == 1)
    }

    @Test func transmitPausesWhileTheBackendIsFull() throws {
        let (driver, net, backend) = try makeDriver()
        backend.blockSends = true
        for index in 0..<4 { try transmit(driver, ethernetFrame(source: UInt8(index), payload: 50), at: UInt64(index) * 0x1000) }
        driver.kick(VirtioNetTests.tx)
        // The first frame is copied out and held; the others stay in the ring.
        #expect(driver.takeUsed(VirtioNetTests.tx).count == 1)
        #expect(backend.sent.isEmpty && net.statistics.txWaits == 1 && net.statistics.txDropped == 0)
        backend.blockSends = false
        driver.transport.serviceEvent(1)  // the poller: the backend became writable
        #expect(backend.sent.map { $0[11] } == [0, 1, 2, 3], "in order, none lost")
        #expect(driver.takeUsed(VirtioNetTests.tx).count == 3)
        #expect(net.statistics.txPackets == 4)
    }

    @Test func withoutADriverInputIsDropped() throws {
        let backend = try FakeNetBackend()
        let net = try VirtioNet(backend: backend, mac: [2, 0, 0, 0, 0, 1], log: { _ in })
        let driver = try VirtioTestDriver(device: net)
        backend.deliver(ethernetFrame(source: 1, payload: 10))
        driver.transport.serviceEvent(0)
        #expect(backend.inbound.isEmpty && net.statistics.rxDropped == 1)
        backend.closed = true
        driver.transport.serviceEvent(0)
        #expect(net.statistics.backendClosed)
    }

    @Test func resetDropsWhatIsHeld() throws {
        let (driver, net, backend) = try makeDriver()
        backend.deliver(ethernetFrame(source: 1, payload: 10))
        driver.transport.serviceEvent(0)  // no buffer: held
        #expect(net.statistics.rxWaits == 1)
        driver.setReg(0x70, 0)
        #expect(net.statistics.rxDropped == 1)
        #expect(driver.initialize())
        postReceive(driver, slot: 0)
        backend.deliver(ethernetFrame(source: 2, payload: 10))
        driver.kick(VirtioNetTests.rx)
        #expect(driver.takeUsed(VirtioNetTests.rx).count == 1)
    }
}

/// The passt framing (4-byte big-endian length) over a real socket pair.
@Suite struct StreamNetBackendTests {
    func pair() -> (StreamNetBackend, Int32) {
        var fds: [Int32] = [0, 0]
        precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        return (StreamNetBackend(fd: fds[0]), fds[1])
    }

    func receive(_ backend: StreamNetBackend) -> (NetReceiveResult, [UInt8]) {
        var buffer = [UInt8](repeating: 0, count: VirtioNet.maxFrameLength)
        let result = buffer.withUnsafeMutableBytes { backend.receive(into: $0) }
        if case let .frame(length) = result { return (result, Array(buffer[0..<length])) }
        return (result, [])
    }

    func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { precondition(write(fd, $0.baseAddress, $0.count) == $0.count) }
    }

    func framed(_ frame: [UInt8]) -> [UInt8] {
        let length = UInt32(frame.count)
        return [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)] + frame
    }

    @Test func framesInPiecesAndTogether() {
        let (backend, peer) = pair()
        defer { close(peer) }
        #expect(receive(backend).0 == .wouldBlock)
        let a = ethernetFrame(source: 1, payload: 100), b = ethernetFrame(source: 2, payload: 1400), c = ethernetFrame(source: 3, payload: 9000)
        let stream = framed(a) + framed(b)
        writeAll(peer, Array(stream[0..<3]))
        #expect(receive(backend).0 == .wouldBlock)
        writeAll(peer, Array(stream[3..<60]))
        #expect(receive(backend).0 == .wouldBlock)
        writeAll(peer, Array(stream[60...]) + framed(c))
        #expect(receive(backend).1 == a)
        #expect(receive(backend).1 == b)
        #expect(receive(backend).1 == c)
        #expect(receive(backend).0 == .wouldBlock)
    }

    @Test func sendPrefixesTheLength() {
        let (backend, peer) = pair()
        defer { close(peer) }
        let frame = ethernetFrame(source: 7, payload: 300)
        #expect(frame.withUnsafeBytes { backend.send($0) } == .sent)
        var bytes = [UInt8](repeating: 0, count: 1000)
        let count = bytes.withUnsafeMutableBytes { read(peer, $0.baseAddress, $0.count) }
        #expect(Array(bytes[0..<count]) == framed(frame))
    }

    @Test func shortWritesFinishBeforeTheNextFrame() {
        let (backend, peer) = pair()
        defer { close(peer) }
        var size: Int32 = 4096
        setsockopt(peer, SOL_SOCKET, SO_RCVBUF, &size, 4)
        let frame = ethernetFrame(source: 1, payload: 60000, fill: 0x77)
        var results: [NetSendResult] = []
        for _ in 0..<20 { results.append(frame.withUnsafeBytes { backend.send($0) }) }
        #expect(results.contains(.wouldBlock), "the socket filled up")
        let accepted = results.filter { $0 == .sent }.count
        // Drain the peer while flushing: every accepted frame arrives whole and in order.
        var stream: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            _ = backend.flush()
            let count = chunk.withUnsafeMutableBytes { recv(peer, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count <= 0 && backend.flush() { break }
            if count > 0 { stream += chunk[0..<count] }
        }
        #expect(stream.count == accepted * (4 + frame.count))
        #expect(Array(stream.prefix(4 + frame.count)) == framed(frame))
    }

    @Test func badLengthOrPeerGoneCloses() {
        let (backend, peer) = pair()
        writeAll(peer, [0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3])
        #expect(receive(backend).0 == .closed)
        close(peer)
        let (other, peer2) = pair()
        close(peer2)
        #expect(receive(other).0 == .closed)
        #expect([UInt8](repeating: 1, count: 60).withUnsafeBytes { other.send($0) } == .failed)
    }
}

/// A real TAP device (needs root and /dev/net/tun; skipped otherwise).
@Suite(.enabled {
    try Prerequisites.check((getuid() == 0 ? [] : ["not root"]) + (access("/dev/net/tun", R_OK | W_OK) == 0 ? [] : ["no /dev/net/tun"]),
                            test: "TapBackendTests")
})
struct TapBackendTests {
    @Test func createsSetsUpAndCarriesFrames() throws {
        let name = "vireotest\(getpid() % 10000)"
        let tap = try TapBackend(name: name)
        #expect(tap.created)
        let flagsFD = open("/sys/class/net/\(name)/flags", O_RDONLY)
        var flagBytes = [UInt8](repeating: 0, count: 32)
        let flagCount = flagBytes.withUnsafeMutableBytes { read(flagsFD, $0.baseAddress, $0.count) }
        close(flagsFD)
        let flags = String(decoding: flagBytes[0..<max(flagCount, 0)], as: UTF8.self)
        #expect((Int(flags.dropFirst(2).prefix { $0.isHexDigit }, radix: 16) ?? 0) & 1 == 1, "IFF_UP")
        // A frame from the guest side goes into the host stack without error.
        let frame = ethernetFrame(source: 1, payload: 46)
        #expect(frame.withUnsafeBytes { tap.send($0) } == .sent)
        // The host kernel sends something on a fresh interface sooner or later (IPv6 router
        // solicitations, MLD); an address and a packet to a neighbour make it certain (ARP).
        _ = system("ip addr add 10.213.77.1/24 dev \(name) 2>/dev/null")
        let sock = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(9).bigEndian
        address.sin_addr.s_addr = UInt32(0x0A_D5_4D_02).bigEndian
        var buffer = [UInt8](repeating: 0, count: VirtioNet.maxFrameLength)
        var got: NetReceiveResult = .wouldBlock
        for _ in 0..<100 {
            _ = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(sock, "x", 1, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            got = buffer.withUnsafeMutableBytes { tap.receive(into: $0) }
            if case .frame = got { break }
            usleep(20_000)
        }
        close(sock)
        guard case let .frame(length) = got else {
            Issue.record("no frame from the TAP")
            return
        }
        #expect(length >= 14)
    }

    @Test func badNameFails() {
        #expect(throws: TapError.self) { try TapBackend(name: "bad name with spaces and way too long") }
    }
}

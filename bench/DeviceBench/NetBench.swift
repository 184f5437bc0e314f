import Devices
import Glibc
import Memory

/// One virtio-net workload over the passt stream protocol on a socketpair: `frameBytes`-byte frames,
/// `batch` per notify, guest → host (transmit) or host → guest (receive).
struct NetScenario {
    let name: String
    let transmit: Bool
    let frameBytes: Int
    let batch: Int

    static let all: [NetScenario] = [
        NetScenario(name: "net tx 1514-byte frames", transmit: true, frameBytes: 1514, batch: 32),
        NetScenario(name: "net tx 64-byte frames", transmit: true, frameBytes: 64, batch: 64),
        NetScenario(name: "net rx 1514-byte frames", transmit: false, frameBytes: 1514, batch: 32),
        NetScenario(name: "net rx 64-byte frames", transmit: false, frameBytes: 64, batch: 64),
    ]
}

/// Runs net scenarios against a VirtioNet over a StreamNetBackend (what passt speaks).
struct NetBench {
    /// What Linux posts without MRG_RXBUF and big packets: the header and a 1518-byte frame.
    static let receiveBufferBytes = 12 + 1518

    func run(_ scenario: NetScenario, seconds: Double) throws -> Measurement {
        var pair: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0 else { throw BenchError("socketpair: errno \(errno)") }
        let peer = pair[1]
        defer { close(peer) }
        var bufferBytes: Int32 = 4 << 20
        for fd in pair {
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bufferBytes, 4)
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufferBytes, 4)
        }
        let device = try VirtioNet(backend: StreamNetBackend(fd: pair[0]), mac: [0x02, 0, 0, 0, 0, 1])
        let driver = try BenchDriver(device: device, ramBytes: 16 << 20)
        let queue = scenario.transmit ? VirtioNet.transmitQueue : VirtioNet.receiveQueue
        let perPacket = scenario.transmit ? 2 : 1
        let slot = UInt64(2 * 4096)
        for packet in 0..<scenario.batch {
            let first = UInt16(packet * perPacket)
            let buffer = BenchDriver.dataBase + UInt64(packet) * slot
            if scenario.transmit {
                // Header and frame in two descriptors, as Linux's virtnet xmit builds them.
                memset(driver.ram + Int(buffer), 0, 12)
                memset(driver.ram + Int(buffer) + 64, 0x5A, scenario.frameBytes)
                driver.setDescriptor(queue, first, address: buffer, length: 12, writable: false, next: first + 1)
                driver.setDescriptor(queue, first + 1, address: buffer + 64, length: UInt32(scenario.frameBytes),
                                     writable: false, next: nil)
            } else {
                driver.setDescriptor(queue, first, address: buffer, length: UInt32(NetBench.receiveBufferBytes),
                                     writable: true, next: nil)
            }
        }
        // The host side of a receive batch: length-prefixed frames, as passt writes them.
        var wire = [UInt8]()
        for _ in 0..<scenario.batch {
            wire += withUnsafeBytes(of: UInt32(scenario.frameBytes).bigEndian) { Array($0) }
            wire += [UInt8](repeating: 0xA5, count: scenario.frameBytes)
        }
        var sink = [UInt8](repeating: 0, count: wire.count)

        var packets = 0
        let clock = Stopwatch()
        repeat {
            if !scenario.transmit {
                guard wire.withUnsafeBytes({ send(peer, $0.baseAddress, $0.count, 0) }) == wire.count else {
                    throw BenchError("\(scenario.name): the socket took less than a batch")
                }
            }
            for packet in 0..<scenario.batch { driver.publish(queue, head: UInt16(packet * perPacket)) }
            driver.notify(queue)
            let used = driver.reap(queue)
            guard used.count == scenario.batch else { throw BenchError("\(scenario.name): \(used.count) of \(scenario.batch) buffers came back") }
            if scenario.transmit {
                var received = 0
                while received < wire.count {
                    let count = sink.withUnsafeMutableBytes { recv(peer, $0.baseAddress! + received, wire.count - received, Int32(MSG_DONTWAIT)) }
                    guard count > 0 else { throw BenchError("\(scenario.name): the backend got \(received) of \(wire.count) bytes") }
                    received += count
                }
            } else if used.bytes != scenario.batch * (12 + scenario.frameBytes) {
                throw BenchError("\(scenario.name): the guest got \(used.bytes) bytes")
            }
            packets += scenario.batch
        } while clock.seconds < seconds
        return Measurement(operations: packets, bytes: packets * scenario.frameBytes, seconds: clock.seconds)
    }
}

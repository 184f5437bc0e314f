import Devices
import Glibc
import Memory

/// One virtio-blk workload: requests of `segments` × `segmentBytes` (a guest page each, as Linux
/// builds them), `batch` per notify, at random or sequential offsets of a real file.
struct BlockScenario {
    let name: String
    let write: Bool
    let segments: Int
    let segmentBytes: Int
    let random: Bool
    let batch: Int

    var requestBytes: Int { segments * segmentBytes }

    static let all: [BlockScenario] = [
        BlockScenario(name: "blk read 4 KiB random", write: false, segments: 1, segmentBytes: 4096, random: true, batch: 32),
        BlockScenario(name: "blk write 4 KiB random", write: true, segments: 1, segmentBytes: 4096, random: true, batch: 32),
        BlockScenario(name: "blk read 64 KiB (16 × 4 KiB segments) seq", write: false, segments: 16, segmentBytes: 4096, random: false, batch: 8),
        BlockScenario(name: "blk write 64 KiB (16 × 4 KiB segments) seq", write: true, segments: 16, segmentBytes: 4096, random: false, batch: 8),
        BlockScenario(name: "blk read 256 KiB (1 segment) seq", write: false, segments: 1, segmentBytes: 256 * 1024, random: false, batch: 8),
    ]
}

/// Runs block scenarios against a VirtioBlock over a FileBlockBackend on a file in `directory`.
struct BlockBench {
    static let fileBytes = 64 << 20

    let directory: String

    func run(_ scenario: BlockScenario, seconds: Double) throws -> Measurement {
        let path = directory + "/vireo-bench-disk.img"
        try BlockBench.makeImage(path)
        defer { unlink(path) }
        let device = VirtioBlock(backend: try FileBlockBackend(path: path), serial: "bench")
        let driver = try BenchDriver(device: device, ramBytes: 32 << 20)
        let perRequest = scenario.segments + 2
        guard scenario.batch * perRequest <= Int(driver.rings[0].size) else { throw BenchError("batch too large for the queue") }

        // Descriptors never change: header, data pages, status. Only the header's type and sector do.
        let headers = BenchDriver.dataBase, statuses = BenchDriver.dataBase + 0x1000
        let data = BenchDriver.dataBase + 0x1_0000
        for request in 0..<scenario.batch {
            let first = UInt16(request * perRequest)
            driver.setDescriptor(0, first, address: headers + UInt64(16 * request), length: 16, writable: false, next: first + 1)
            for segment in 0..<scenario.segments {
                // Every other page, so no two segments are adjacent in guest memory (as in a real guest).
                let page = data + UInt64((request * scenario.segments + segment) * 2 * scenario.segmentBytes)
                let index = first + 1 + UInt16(segment)
                driver.setDescriptor(0, index, address: page, length: UInt32(scenario.segmentBytes),
                                     writable: !scenario.write, next: index + 1)
            }
            driver.setDescriptor(0, first + UInt16(perRequest - 1), address: statuses + UInt64(request), length: 1,
                                 writable: true, next: nil)
        }

        let slots = UInt64(BlockBench.fileBytes / scenario.requestBytes)
        var random: UInt64 = 0x9E37_79B9_7F4A_7C15, cursor: UInt64 = 0
        var requests = 0
        let clock = Stopwatch()
        repeat {
            for request in 0..<scenario.batch {
                let slot: UInt64
                if scenario.random {
                    random = random &* 6364136223846793005 &+ 1442695040888963407
                    slot = (random >> 33) % slots
                } else {
                    slot = cursor % slots
                    cursor += 1
                }
                let header = headers + UInt64(16 * request)
                driver.store(UInt32(scenario.write ? 1 : 0), at: header)
                driver.store(slot * UInt64(scenario.requestBytes) / 512, at: header + 8)
                driver.store(UInt8(0xFF), at: statuses + UInt64(request))
                driver.publish(0, head: UInt16(request * perRequest))
            }
            driver.notify(0)
            let used = driver.reap(0)
            guard used.count == scenario.batch else { throw BenchError("\(scenario.name): \(used.count) of \(scenario.batch) requests came back") }
            for request in 0..<scenario.batch where driver.load(UInt8.self, at: statuses + UInt64(request)) != 0 {
                throw BenchError("\(scenario.name): request failed with status \(driver.load(UInt8.self, at: statuses + UInt64(request)))")
            }
            requests += scenario.batch
        } while clock.seconds < seconds
        return Measurement(operations: requests, bytes: requests * scenario.requestBytes, seconds: clock.seconds)
    }

    /// A 64 MiB image of non-zero data, written and left in the page cache.
    static func makeImage(_ path: String) throws {
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw BenchError("cannot create \(path): errno \(errno)") }
        defer { close(fd) }
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        for index in chunk.indices { chunk[index] = UInt8(truncatingIfNeeded: index &* 31 &+ 7) }
        for _ in 0..<(fileBytes >> 20) {
            guard chunk.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == chunk.count else {
                throw BenchError("cannot write \(path): errno \(errno)")
            }
        }
    }
}

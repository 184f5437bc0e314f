import Glibc
import Testing
@testable import Devices

/// virtio-blk against a real temporary image file, through the simulated driver.
@Suite struct VirtioBlockTests {
    static let sectors = 64
    let data = VirtioTestDriver.dataBase
    /// Request header, data and status areas inside the driver's data window.
    var header: UInt64 { data }
    var payload: UInt64 { data + 0x1000 }
    var status: UInt64 { data + 0x3F000 }

    func makeDriver(readOnly: Bool = false, serial: String? = "vireo-disk-0") throws -> (VirtioTestDriver, VirtioBlock, TemporaryFile) {
        let file = TemporaryFile(size: VirtioBlockTests.sectors * 512) { UInt8(truncatingIfNeeded: $0 / 512) }
        let backend = try FileBlockBackend(path: file.path, readOnly: readOnly)
        let block = VirtioBlock(backend: backend, serial: serial)
        let driver = try VirtioTestDriver(device: block)
        #expect(driver.initialize())
        return (driver, block, file)
    }

    func writeHeader(_ driver: VirtioTestDriver, type: UInt32, sector: UInt64) throws {
        try driver.memory.write(type, at: header)
        try driver.memory.write(UInt32(0), at: header + 4)
        try driver.memory.write(sector, at: header + 8)
        try driver.memory.write(UInt8(0xEE), at: status)
    }

    /// Sends one request and returns (status byte, used length).
    func submit(_ driver: VirtioTestDriver, type: UInt32, sector: UInt64 = 0, out: [TestBuffer] = [],
                into: [TestBuffer] = []) throws -> (UInt8, UInt32) {
        try writeHeader(driver, type: type, sector: sector)
        driver.post(0, [.readable(header, 16)] + out + into + [.writable(status, 1)])
        driver.kick(0)
        let used = driver.takeUsed(0)
        #expect(used.count == 1)
        return (try driver.memory.read(UInt8.self, at: status), used.first?.length ?? 0)
    }

    @Test func configAndFeatures() throws {
        let (driver, block, _) = try makeDriver()
        #expect(block.capacity == 64)
        #expect(driver.transport.read(0x100, size: 8) == 64)
        #expect(driver.transport.read(0x10C, size: 4) == 254, "seg_max")
        let features = driver.offeredFeatures
        for bit in [VirtioBlock.Feature.flush, VirtioBlock.Feature.discard, VirtioBlock.Feature.writeZeroes,
                    VirtioBlock.Feature.segMax, VirtioBlock.Feature.sizeMax] {
            #expect(features & bit != 0)
        }
        #expect(features & VirtioBlock.Feature.readOnly == 0)
        #expect(driver.transport.read(0x124, size: 4) == UInt64(block.limits.maxDiscardSectors))
        #expect(driver.transport.read(0x138, size: 1) == 1, "write_zeroes_may_unmap")
    }

    @Test func readReturnsTheImage() throws {
        let (driver, block, _) = try makeDriver()
        let (result, length) = try submit(driver, type: 0, sector: 3, into: [.writable(payload, 512), .writable(payload + 0x800, 512)])
        #expect(result == 0)
        #expect(length == 1025)
        #expect(try driver.memory.readBytes(at: payload, count: 512).allSatisfy { $0 == 3 })
        #expect(try driver.memory.readBytes(at: payload + 0x800, count: 512).allSatisfy { $0 == 4 })
        #expect(block.statistics.bytesRead == 1024)
        #expect(driver.guardIntact())
    }

    @Test func writeLandsInTheFileAndFlushes() throws {
        let (driver, block, file) = try makeDriver()
        try driver.memory.write([UInt8](repeating: 0x5A, count: 1024), at: payload)
        let (result, length) = try submit(driver, type: 1, sector: 10, out: [.readable(payload, 1024)])
        #expect(result == 0)
        #expect(length == 1)
        #expect(file.read(at: 10 * 512, count: 1024).allSatisfy { $0 == 0x5A })
        #expect(file.read(at: 12 * 512, count: 1) == [12])
        let (flushed, _) = try submit(driver, type: 4)
        #expect(flushed == 0)
        #expect(block.statistics.flushes == 1)
        #expect(block.statistics.bytesWritten == 1024)
    }

    @Test func headerDataAndStatusInOneDescriptorEach() throws {
        // ANY_LAYOUT: the header may share a descriptor with data, the status with read data.
        let (driver, _, file) = try makeDriver()
        try writeHeader(driver, type: 1, sector: 1)
        try driver.memory.write([UInt8](repeating: 0x77, count: 512), at: header + 16)
        driver.post(0, [.readable(header, 16 + 512), .writable(status, 1)])
        driver.kick(0)
        #expect(driver.takeUsed(0).count == 1)
        #expect(try driver.memory.read(UInt8.self, at: status) == 0)
        #expect(file.read(at: 512, count: 512).allSatisfy { $0 == 0x77 })

        try writeHeader(driver, type: 0, sector: 2)
        driver.post(0, [.readable(header, 16), .writable(payload, 513)])
        driver.kick(0)
        #expect(driver.takeUsed(0).map(\.length) == [513])
        #expect(try driver.memory.read(UInt8.self, at: payload + 512) == 0, "status byte at the end of the data buffer")
        #expect(try driver.memory.read(UInt8.self, at: payload) == 2)
    }

    @Test func discardAndWriteZeroes() throws {
        let (driver, _, file) = try makeDriver()
        func range(_ sector: UInt64, _ count: UInt32, _ flags: UInt32) throws {
            try driver.memory.write(sector, at: payload)
            try driver.memory.write(count, at: payload + 8)
            try driver.memory.write(flags, at: payload + 12)
        }
        try range(8, 8, 0)
        #expect(try submit(driver, type: 11, out: [.readable(payload, 16)]).0 == 0)
        #expect(file.read(at: 8 * 512, count: 4096).allSatisfy { $0 == 0 }, "a punched hole reads as zeroes")
        #expect(file.read(at: 16 * 512, count: 1) == [16])

        try range(20, 2, 0)
        #expect(try submit(driver, type: 13, out: [.readable(payload, 16)]).0 == 0)
        #expect(file.read(at: 20 * 512, count: 1024).allSatisfy { $0 == 0 })
        #expect(file.read(at: 22 * 512, count: 1) == [22])

        try range(30, 1, 1)
        #expect(try submit(driver, type: 13, out: [.readable(payload, 16)]).0 == 0, "write-zeroes may unmap")
        #expect(file.read(at: 30 * 512, count: 512).allSatisfy { $0 == 0 })

        try range(40, 1, 1)
        #expect(try submit(driver, type: 11, out: [.readable(payload, 16)]).0 == 2, "unmap on discard is UNSUPP")
        try range(40, 1, 4)
        #expect(try submit(driver, type: 13, out: [.readable(payload, 16)]).0 == 2, "unknown flag is UNSUPP")
        try range(63, 2, 0)
        #expect(try submit(driver, type: 13, out: [.readable(payload, 16)]).0 == 1, "past the end is IOERR")
        #expect(try submit(driver, type: 11, out: [.readable(payload, 12)]).0 == 1, "truncated range is IOERR")
        #expect(try submit(driver, type: 11).0 == 1, "no range is IOERR")
        #expect(file.read(at: 40 * 512, count: 1) == [40])
        #expect(!driver.needsReset)
    }

    @Test func getIDReturnsTheSerial() throws {
        let (driver, _, _) = try makeDriver(serial: "disk-serial-that-is-way-too-long")
        try driver.memory.zero(at: payload, count: 32)
        let (result, length) = try submit(driver, type: 8, into: [.writable(payload, 20)])
        #expect(result == 0)
        #expect(length == 21)
        #expect(try driver.memory.readBytes(at: payload, count: 20) == Array("disk-serial-that-is-".utf8))

        let (short, _, _) = try makeDriver(serial: "abc")
        let (okay, _) = try submit(short, type: 8, into: [.writable(payload, 20)])
        #expect(okay == 0)
        #expect(try short.memory.readBytes(at: payload, count: 20) == Array("abc".utf8) + [UInt8](repeating: 0, count: 17))
    }

    @Test func readOnlyRefusesWrites() throws {
        let (driver, block, file) = try makeDriver(readOnly: true)
        #expect(driver.offeredFeatures & VirtioBlock.Feature.readOnly != 0)
        #expect(driver.offeredFeatures & VirtioBlock.Feature.discard == 0)
        try driver.memory.write([UInt8](repeating: 0x11, count: 512), at: payload)
        #expect(try submit(driver, type: 1, sector: 0, out: [.readable(payload, 512)]).0 == 1)
        #expect(file.read(at: 0, count: 1) == [0])
        #expect(try submit(driver, type: 11, out: [.readable(payload, 16)]).0 == 1)
        #expect(try submit(driver, type: 13, out: [.readable(payload, 16)]).0 == 1)
        #expect(try submit(driver, type: 0, sector: 5, into: [.writable(payload, 512)]).0 == 0)
        #expect(try submit(driver, type: 4).0 == 0, "flush of a read-only disk is fine")
        #expect(block.statistics.errors == 3)
    }

    @Test func outOfRangeAndMisshapenRequestsAreIOErrors() throws {
        let (driver, _, _) = try makeDriver()
        #expect(try submit(driver, type: 0, sector: 64, into: [.writable(payload, 512)]).0 == 1)
        #expect(try submit(driver, type: 0, sector: 63, into: [.writable(payload, 1024)]).0 == 1)
        #expect(try submit(driver, type: 0, sector: UInt64.max, into: [.writable(payload, 512)]).0 == 1)
        #expect(try submit(driver, type: 1, sector: UInt64.max / 256, out: [.readable(payload, 512)]).0 == 1)
        #expect(try submit(driver, type: 0, sector: 0, into: [.writable(payload, 100)]).0 == 1, "not whole sectors")
        #expect(try submit(driver, type: 0, sector: 63, into: [.writable(payload, 512)]).0 == 0, "the last sector is fine")
        #expect(try submit(driver, type: 0, sector: 64, into: []).0 == 0, "an empty read at the end is fine")
        #expect(!driver.needsReset)
    }

    @Test func unknownTypesAreUnsupported() throws {
        let (driver, _, _) = try makeDriver()
        for type: UInt32 in [2, 3, 5, 10, 14, 0xFFFF_FFFF] {
            #expect(try submit(driver, type: type, into: [.writable(payload, 16)]).0 == 2, "type \(type)")
        }
    }

    @Test func requestWithoutStatusByteNeedsReset() throws {
        let (driver, _, _) = try makeDriver()
        try writeHeader(driver, type: 0, sector: 0)
        driver.post(0, [.readable(header, 16)])
        driver.kick(0)
        #expect(driver.needsReset)
        #expect(driver.takeUsed(0).isEmpty)
    }

    @Test func requestWithShortHeaderNeedsReset() throws {
        let (driver, _, _) = try makeDriver()
        driver.post(0, [.readable(header, 8), .writable(status, 1)])
        driver.kick(0)
        #expect(driver.needsReset)
    }

    @Test func flushReachesTheBackendAfterTheWritesBeforeIt() throws {
        // fsync is what makes a flushed write survive a host crash: the backend must see the write,
        // then the flush, and the guest must hear OK only after the flush returned.
        let backend = RecordingBlockBackend(size: 64 * 512)
        let driver = try VirtioTestDriver(device: VirtioBlock(backend: backend))
        driver.initialize()
        try driver.memory.write([UInt8](repeating: 0xC3, count: 512), at: payload)
        #expect(try submit(driver, type: 1, sector: 7, out: [.readable(payload, 512)]).0 == 0)
        #expect(try submit(driver, type: 4).0 == 0)
        #expect(backend.events == ["write 3584+512", "flush"])
        backend.failFlush = true
        #expect(try submit(driver, type: 4).0 == 1, "a failed fsync is an I/O error, not a silent OK")
    }

    @Test func backendOpenErrorsNameThePath() {
        #expect(throws: BlockBackendError.self) { try FileBlockBackend(path: "/nonexistent/disk.img") }
        do {
            _ = try FileBlockBackend(path: "/nonexistent/disk.img")
        } catch {
            #expect(error.description.contains("/nonexistent/disk.img"))
        }
    }
}

/// A backend that logs the operations it sees (and can fail flushes).
final class RecordingBlockBackend: BlockBackend, @unchecked Sendable {
    let size: UInt64
    let isReadOnly = false
    var events: [String] = []
    var failFlush = false

    init(size: UInt64) { self.size = size }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(BlockBackendError) {
        events.append("read \(offset)+\(buffer.count)")
    }
    func write(from buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(BlockBackendError) {
        events.append("write \(offset)+\(buffer.count)")
    }
    func flush() throws(BlockBackendError) {
        events.append("flush")
        if failFlush { throw BlockBackendError(operation: "fsync", errno: EIO) }
    }
    func discard(at offset: UInt64, length: UInt64) throws(BlockBackendError) { events.append("discard") }
    func writeZeroes(at offset: UInt64, length: UInt64, mayUnmap: Bool) throws(BlockBackendError) { events.append("zeroes") }
}

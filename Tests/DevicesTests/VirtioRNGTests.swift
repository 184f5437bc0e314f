import Testing
@testable import Devices

/// virtio-rng over the simulated driver.
@Suite struct VirtioRNGTests {
    let data = VirtioTestDriver.dataBase

    @Test func fillsWritableBuffersAndCounts() throws {
        let rng = VirtioRNG()
        let driver = try VirtioTestDriver(device: rng)
        driver.initialize()
        let head = driver.post(0, [.writable(data, 64)])
        driver.kick(0)
        let used = driver.takeUsed(0)
        #expect(used.count == 1)
        #expect(used.first?.id == UInt32(head))
        #expect(used.first?.length == 64)
        #expect(rng.bytesServed == 64)
        let bytes = try driver.memory.readBytes(at: data, count: 64)
        #expect(Set(bytes).count > 8, "64 random bytes are not a handful of values")
        #expect(driver.reg(0x60) == VirtioInterruptBit.usedBuffer)
        #expect(driver.guardIntact())
    }

    @Test func scatteredAndIndirectBuffers() throws {
        let rng = VirtioRNG()
        let driver = try VirtioTestDriver(device: rng)
        driver.initialize()
        try driver.memory.zero(at: data, count: 0x1000)
        driver.post(0, [.writable(data, 10), .writable(data + 0x100, 0), .writable(data + 0x200, 22)])
        driver.post(0, [.writable(data + 0x400, 100), .writable(data + 0x600, 28)], indirectTable: data + 0x800)
        driver.kick(0)
        #expect(driver.takeUsed(0).map(\.length) == [32, 128])
        #expect(rng.bytesServed == 160)
        #expect(try driver.memory.readBytes(at: data + 10, count: 0xF6).allSatisfy { $0 == 0 }, "gap untouched")
        #expect(driver.guardIntact())
    }

    @Test func readableOnlyBufferGetsNothing() throws {
        let rng = VirtioRNG()
        let driver = try VirtioTestDriver(device: rng)
        driver.initialize()
        driver.post(0, [.readable(data, 64)])
        driver.kick(0)
        #expect(driver.takeUsed(0).map(\.length) == [0])
        #expect(rng.bytesServed == 0)
        #expect(!driver.needsReset)
    }

    @Test func hugeBuffersAreCapped() throws {
        let rng = VirtioRNG()
        let driver = try VirtioTestDriver(device: rng)
        driver.initialize()
        driver.post(0, [.writable(data, UInt32(VirtioTestDriver.dataSize))])
        driver.kick(0)
        #expect(driver.takeUsed(0).map(\.length) == [UInt32(VirtioRNG.maxBytesPerRequest)])
    }

    @Test func manyRequestsWrapTheRing() throws {
        let rng = VirtioRNG()
        let driver = try VirtioTestDriver(device: rng)
        driver.initialize(queueSize: 8)
        for round in 0..<100 {
            driver.post(0, [.writable(data + UInt64(round % 4) * 16, 16)])
            driver.kick(0)
            #expect(driver.takeUsed(0).count == 1)
        }
        #expect(rng.bytesServed == 1600)
        #expect(driver.guardIntact())
    }
}

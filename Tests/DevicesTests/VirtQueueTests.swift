import Memory
import Testing
@testable import Devices

/// Split-ring behaviour: notification suppression and every rule a hostile driver can break.
@Suite struct VirtQueueTests {
    let data = VirtioTestDriver.dataBase

    func runningRNG(features: UInt64? = nil, queueSize: UInt16 = 16) throws -> VirtioTestDriver {
        let driver = try VirtioTestDriver(device: VirtioRNG())
        #expect(driver.initialize(features: features, queueSize: queueSize))
        return driver
    }

    // MARK: notification suppression

    @Test func eventIndexSuppressesInterruptsUntilUsedEvent() throws {
        let driver = try runningRNG()
        // Interrupt only once used idx passes 3 (i.e. after the 4th buffer).
        driver.setUsedEvent(0, 3)
        for round in 1...6 {
            driver.post(0, [.writable(data, 8)])
            driver.kick(0)
            let expected = round >= 4 ? 1 : 0
            #expect(driver.interrupt.raises == expected, "round \(round)")
        }
        #expect(driver.takeUsed(0).count == 6)
    }

    @Test func eventIndexInterruptsOncePerBatchWhenCaughtUp() throws {
        let driver = try runningRNG()
        for _ in 0..<4 { driver.post(0, [.writable(data, 8)]) }
        driver.setUsedEvent(0, 0)
        driver.kick(0)
        #expect(driver.takeUsed(0).count == 4)
        #expect(driver.interrupt.raises == 1)
        // The device asked to be kicked at the next avail idx.
        #expect(driver.availEvent(0) == 4)
    }

    @Test func noInterruptFlagWithoutEventIndex() throws {
        let driver = try runningRNG(features: VirtioFeature.version1)
        driver.setAvailFlags(0, 1)
        driver.post(0, [.writable(data, 8)])
        driver.kick(0)
        #expect(driver.interrupt.raises == 0)
        driver.setAvailFlags(0, 0)
        driver.post(0, [.writable(data, 8)])
        driver.kick(0)
        #expect(driver.interrupt.raises == 1)
        #expect(driver.takeUsed(0).count == 2)
    }

    @Test func usedEventWrapsAround() throws {
        let driver = try runningRNG(queueSize: 4)
        var expectedRaises = 0
        // Drive used idx across the 16-bit wrap, asking for an interrupt on every buffer.
        for round in 0..<66_000 {
            driver.setUsedEvent(0, UInt16(truncatingIfNeeded: round))
            driver.post(0, [.writable(data, 1)])
            driver.kick(0)
            expectedRaises += 1
            if driver.interrupt.raises != expectedRaises { Issue.record("missed interrupt at \(round)"); break }
            _ = driver.takeUsed(0)
        }
        #expect(driver.usedIndex(0) == UInt16(truncatingIfNeeded: 66_000))
    }

    // MARK: hostile chains

    func expectViolation(_ driver: VirtioTestDriver, _ what: Comment) {
        driver.kick(0)
        #expect(driver.needsReset, what)
        #expect(driver.reg(0x60) & VirtioInterruptBit.configChange != 0, what)
        #expect(driver.takeUsed(0).isEmpty, what)
        #expect(driver.logs.all.count == 1, what)
        #expect(driver.guardIntact(), what)
        // Processing has stopped: a good buffer now is left alone.
        driver.post(0, [.writable(data, 8)])
        driver.kick(0)
        #expect(driver.takeUsed(0).isEmpty, what)
        #expect(driver.logs.all.count == 1, "logged once: \(what)")
        // And a reset brings the device back.
        driver.initialize()
        #expect(!driver.needsReset)
        driver.post(0, [.writable(data, 8)])
        driver.kick(0)
        #expect(driver.takeUsed(0).count == 1, what)
    }

    @Test func bufferOutsideRAM() throws {
        let driver = try runningRNG()
        driver.post(0, [.writable(0x10_0000, 8)])
        expectViolation(driver, "just past RAM")
    }

    @Test func bufferStraddlingTheEndOfRAM() throws {
        let driver = try runningRNG()
        driver.post(0, [.writable(0xF_FFF0, 0x20)])
        expectViolation(driver, "straddles the end")
    }

    @Test func hugeLength() throws {
        let driver = try runningRNG()
        driver.post(0, [.writable(data, UInt32.max)])
        expectViolation(driver, "4 GiB buffer")
    }

    @Test func addressThatWraps() throws {
        let driver = try runningRNG()
        driver.post(0, [.writable(UInt64.max - 3, 16)])
        expectViolation(driver, "wrapping address")
    }

    @Test func zeroLengthDescriptorsAreHarmless() throws {
        let driver = try runningRNG()
        driver.post(0, [.writable(0xFFFF_FFFF_0000, 0), .writable(data, 4)])
        driver.kick(0)
        #expect(driver.takeUsed(0).map(\.length) == [4])
        #expect(!driver.needsReset)
    }

    @Test func descriptorLoop() throws {
        let driver = try runningRNG()
        driver.writeDescriptor(0, 0, RawDescriptor(address: data, length: 8, flags: 3, next: 1))
        driver.writeDescriptor(0, 1, RawDescriptor(address: data, length: 8, flags: 3, next: 0))
        driver.publish(0, head: 0)
        expectViolation(driver, "two-descriptor loop")
    }

    @Test func selfLoop() throws {
        let driver = try runningRNG()
        driver.writeDescriptor(0, 5, RawDescriptor(address: data, length: 8, flags: 3, next: 5))
        driver.publish(0, head: 5)
        expectViolation(driver, "self loop")
    }

    @Test func nextOutOfRange() throws {
        let driver = try runningRNG()
        driver.writeDescriptor(0, 0, RawDescriptor(address: data, length: 8, flags: 3, next: 16))
        driver.publish(0, head: 0)
        expectViolation(driver, "next past the table")
    }

    @Test func headOutOfRange() throws {
        let driver = try runningRNG()
        driver.publish(0, head: 16)
        expectViolation(driver, "head past the table")
    }

    @Test func readableAfterWritable() throws {
        let driver = try runningRNG()
        driver.post(0, [.writable(data, 8), .readable(data + 8, 8)])
        expectViolation(driver, "wrong direction order")
    }

    @Test func readableAfterZeroLengthWritable() throws {
        let driver = try runningRNG()
        driver.post(0, [.writable(data, 0), .readable(data + 8, 8)])
        expectViolation(driver, "order counts even for empty buffers")
    }

    @Test func availIndexJump() throws {
        let driver = try runningRNG()
        driver.setAvailIndex(0, 17)
        expectViolation(driver, "avail idx 17 ahead of a 16-entry ring")
    }

    @Test func availIndexGoingBackwards() throws {
        let driver = try runningRNG()
        driver.post(0, [.writable(data, 8)])
        driver.kick(0)
        #expect(driver.takeUsed(0).count == 1)
        driver.setAvailIndex(0, 0)
        expectViolation(driver, "avail idx moved back")
    }

    @Test func indirectOutsideRAM() throws {
        let driver = try runningRNG()
        driver.writeDescriptor(0, 0, RawDescriptor(address: 0xFFFF0, length: 32, flags: 4, next: 0))
        driver.publish(0, head: 0)
        expectViolation(driver, "indirect table straddles the end of RAM")
    }

    @Test func indirectBadLength() throws {
        for length: UInt32 in [0, 24, 16 * 1025] {
            let driver = try runningRNG()
            driver.writeDescriptor(0, 0, RawDescriptor(address: data, length: length, flags: 4, next: 0))
            driver.publish(0, head: 0)
            expectViolation(driver, "indirect table of \(length) bytes")
        }
    }

    @Test func nestedIndirect() throws {
        let driver = try runningRNG()
        let table = data + 0x1000
        driver.writeDescriptor(0, 0, RawDescriptor(address: data, length: 8, flags: 2 | 1, next: 1), table: table)
        driver.writeDescriptor(0, 1, RawDescriptor(address: table, length: 32, flags: 4, next: 0), table: table)
        driver.writeDescriptor(0, 0, RawDescriptor(address: table, length: 32, flags: 4, next: 0))
        driver.publish(0, head: 0)
        expectViolation(driver, "indirect inside indirect")
    }

    @Test func indirectWithNext() throws {
        let driver = try runningRNG()
        let table = data + 0x1000
        driver.writeDescriptor(0, 0, RawDescriptor(address: data, length: 8, flags: 2, next: 0), table: table)
        driver.writeDescriptor(0, 0, RawDescriptor(address: table, length: 16, flags: 4 | 1, next: 1))
        driver.writeDescriptor(0, 1, RawDescriptor(address: data, length: 8, flags: 2, next: 0))
        driver.publish(0, head: 0)
        expectViolation(driver, "INDIRECT and NEXT together")
    }

    @Test func indirectLoop() throws {
        let driver = try runningRNG()
        let table = data + 0x1000
        driver.writeDescriptor(0, 0, RawDescriptor(address: data, length: 8, flags: 3, next: 1), table: table)
        driver.writeDescriptor(0, 1, RawDescriptor(address: data, length: 8, flags: 3, next: 0), table: table)
        driver.writeDescriptor(0, 0, RawDescriptor(address: table, length: 32, flags: 4, next: 0))
        driver.publish(0, head: 0)
        expectViolation(driver, "loop inside an indirect table")
    }

    @Test func indirectEntryOutsideRAM() throws {
        let driver = try runningRNG()
        driver.post(0, [.writable(data, 8), .writable(0x4000_0000, 8)], indirectTable: data + 0x1000)
        expectViolation(driver, "indirect entry outside RAM")
    }

    @Test func indirectWithoutTheFeature() throws {
        let driver = try runningRNG(features: VirtioFeature.version1)
        driver.post(0, [.writable(data, 8)], indirectTable: data + 0x1000)
        expectViolation(driver, "indirect not negotiated")
    }

    @Test func directionOrderAcrossIndirect() throws {
        let driver = try runningRNG()
        driver.post(0, [.writable(data, 8), .readable(data, 8)], indirectTable: data + 0x1000)
        expectViolation(driver, "order inside an indirect table")
    }

    @Test func longestLegalChainIsAccepted() throws {
        let driver = try runningRNG()
        driver.post(0, (0..<16).map { .writable(data + UInt64($0) * 4, 4) })
        driver.kick(0)
        #expect(driver.takeUsed(0).map(\.length) == [64])
        let big = (0..<VirtQueue.maxIndirectDescriptors).map { TestBuffer.writable(data + UInt64($0 % 64), 1) }
        driver.post(0, big, indirectTable: data + 0x10000)
        driver.kick(0)
        #expect(driver.takeUsed(0).map(\.length) == [1024])
        #expect(!driver.needsReset)
    }

    @Test func bufferAcrossAdjacentRegionsIsSplit() throws {
        let driver = try VirtioTestDriver(device: VirtioRNG(), layout: [(0, 0xA0000), (0xA0000, 0x60000)])
        driver.initialize()
        try driver.memory.zero(at: 0x9_FFF0, count: 0x10)
        try driver.memory.zero(at: 0xA_0000, count: 0x10)
        driver.post(0, [.writable(0x9_FFF0, 0x20)])
        driver.kick(0)
        #expect(driver.takeUsed(0).map(\.length) == [0x20])
        #expect(try driver.memory.readBytes(at: 0xA_0008, count: 8).contains { $0 != 0 })
    }

    @Test func bufferInAHoleBetweenRegions() throws {
        let driver = try VirtioTestDriver(device: VirtioRNG(), layout: [(0, 0xA0000), (0xB0000, 0x50000)])
        driver.initialize()
        driver.post(0, [.writable(0x9_FFF0, 0x20)])
        expectViolation(driver, "runs into the hole")
    }
}

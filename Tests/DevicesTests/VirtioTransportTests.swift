import Memory
import Testing
@testable import Devices

/// The virtio-mmio register file: identification, negotiation, queue setup, status, interrupts.
@Suite struct VirtioTransportTests {
    @Test func identifiesAsModernVirtioMMIO() throws {
        let driver = try VirtioTestDriver(device: VirtioRNG())
        #expect(driver.reg(0x000) == 0x7472_6976)
        #expect(driver.reg(0x004) == 2)
        #expect(driver.reg(0x008) == 4)
        #expect(driver.reg(0x00C) == VirtioMMIOTransport.vendorID)
        #expect(driver.offeredFeatures & VirtioFeature.version1 != 0)
        #expect(driver.offeredFeatures & VirtioFeature.eventIndex != 0)
        #expect(driver.offeredFeatures & VirtioFeature.indirectDescriptors != 0)
        #expect(driver.reg(0x0B0) == UInt32.max, "no shared memory regions")
        // Registers are 32-bit only; narrower accesses read as zero and writes are dropped.
        #expect(driver.transport.read(0x000, size: 1) == 0)
        #expect(driver.transport.read(0x002, size: 4) == 0)
        driver.transport.write(0x070, size: 2, value: 1)
        #expect(driver.status == 0)
    }

    @Test func featuresOKNeedsVersion1AndOnlyOfferedBits() throws {
        let driver = try VirtioTestDriver(device: VirtioRNG())
        #expect(driver.initialize(features: 0) == false, "legacy driver refused")
        #expect(driver.status & VirtioStatus.featuresOK == 0)
        #expect(driver.initialize(features: VirtioFeature.version1 | 1 << 40) == false, "unoffered bit refused")
        #expect(driver.initialize(features: VirtioFeature.version1))
        #expect(driver.transport.isActive)
        #expect(driver.reg(0x70) == 0x0F)
    }

    @Test func driverFeaturesAreFrozenAfterFeaturesOK() throws {
        let driver = try VirtioTestDriver(device: VirtioRNG())
        driver.initialize(features: VirtioFeature.version1)
        driver.setReg(0x24, 0)
        driver.setReg(0x20, 0xFFFF_FFFF)
        #expect(driver.reg(0x20) == 0)
    }

    @Test func queueRegistersFollowQueueSel() throws {
        let driver = try VirtioTestDriver(device: VirtioBlock(backend: MemoryBlockBackend(size: 4096)))
        driver.setReg(0x30, 0)
        #expect(driver.reg(0x34) == 256)
        driver.setReg(0x38, 64)
        driver.setReg(0x80, 0x1234_5000)
        driver.setReg(0x84, 0x1)
        #expect(driver.reg(0x38) == 64)
        #expect(driver.reg(0x80) == 0x1234_5000)
        #expect(driver.reg(0x84) == 1)
        driver.setReg(0x30, 1)
        #expect(driver.reg(0x34) == 0, "a queue that does not exist has QueueNumMax 0")
        driver.setReg(0x38, 64)
        #expect(driver.reg(0x38) == 0)
        #expect(driver.reg(0x44) == 0)
    }

    @Test func driverOKWithoutFeaturesOKIsIgnored() throws {
        let driver = try VirtioTestDriver(device: VirtioRNG())
        driver.setReg(0x70, VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.driverOK)
        #expect(driver.status & VirtioStatus.driverOK == 0)
        #expect(!driver.transport.isActive)
    }

    @Test func queueSetupIsFrozenOnceRunning() throws {
        let driver = try VirtioTestDriver(device: VirtioRNG())
        driver.initialize()
        driver.setReg(0x30, 0)
        driver.setReg(0x38, 2)
        driver.setReg(0x80, 0xFFFF_0000)
        #expect(driver.reg(0x38) == 16)
        #expect(UInt64(driver.reg(0x80)) == driver.queues[0].desc)
        // And the rings still work.
        driver.post(0, [.writable(VirtioTestDriver.dataBase, 32)])
        driver.kick(0)
        #expect(driver.takeUsed(0).count == 1)
    }

    @Test func resetClearsEverythingAndStopsProcessing() throws {
        let driver = try VirtioTestDriver(device: VirtioRNG())
        driver.initialize()
        driver.post(0, [.writable(VirtioTestDriver.dataBase, 8)])
        driver.kick(0)
        #expect(driver.reg(0x60) == VirtioInterruptBit.usedBuffer)
        #expect(driver.takeUsed(0).count == 1)
        driver.setReg(0x70, 0)
        #expect(driver.status == 0)
        #expect(driver.reg(0x60) == 0)
        #expect(driver.interrupt.pending == 0)
        driver.setReg(0x30, 0)
        #expect(driver.reg(0x44) == 0)
        #expect(driver.reg(0x38) == 0)
        #expect(!driver.transport.isActive)
        // A buffer made available now is not consumed: the device is not running.
        driver.post(0, [.writable(VirtioTestDriver.dataBase, 8)])
        driver.kick(0)
        #expect(driver.takeUsed(0).isEmpty)
    }

    @Test func interruptStatusIsAcknowledgedBitByBit() throws {
        let driver = try VirtioTestDriver(device: VirtioRNG())
        driver.initialize()
        driver.post(0, [.writable(VirtioTestDriver.dataBase, 8)])
        driver.kick(0)
        driver.transport.signalConfigChange()
        #expect(driver.reg(0x60) == 3)
        #expect(driver.interrupt.raises == 2)
        driver.setReg(0x64, 1)
        #expect(driver.reg(0x60) == 2)
        #expect(driver.interrupt.pending == 2)
        driver.setReg(0x64, 2)
        #expect(driver.interrupt.pending == 0)
    }

    @Test func configGenerationCountsChanges() throws {
        let driver = try VirtioTestDriver(device: VirtioRNG())
        let before = driver.reg(0xFC)
        driver.transport.signalConfigChange()
        #expect(driver.reg(0xFC) == before &+ 1)
        #expect(driver.reg(0x60) == 0, "no interrupt before DRIVER_OK")
    }

    @Test func levelInterruptFollowsInterruptStatus() throws {
        let line = FakeLine()
        let memory = try GuestMemory(layout: [(0, 0x100000)])
        let transport = try VirtioMMIOTransport(device: VirtioRNG(), memory: memory, interrupt: LevelInterrupt(line: line))
        transport.write(0x70, size: 4, value: 1)
        transport.signalConfigChange()
        #expect(line.level == false, "not running yet")
        transport.write(0x70, size: 4, value: 0)
        #expect(line.history.allSatisfy { !$0 })
    }

    @Test func eventFDInterruptSignalsOnRaiseOnly() throws {
        let interrupt = try EventFDInterrupt()
        interrupt.interruptStatusChanged(pending: 1, raised: true)
        interrupt.interruptStatusChanged(pending: 0, raised: false)
        #expect(interrupt.eventFD.consume() == 1)
        #expect(interrupt.eventFD.consume() == 0)
    }

    @Test func notifierEventFDWakesTheQueueLikeAnIOEventFD() throws {
        let driver = try VirtioTestDriver(device: VirtioRNG())
        driver.initialize()
        driver.post(0, [.writable(VirtioTestDriver.dataBase, 16)])
        // What KVM does on a matching write at base+0x50: signal the eventfd, no MMIO exit.
        driver.transport.queueNotifiers[0].signal()
        driver.transport.processNotifications()
        #expect(driver.takeUsed(0).map(\.length) == [16])
    }

    @Test func configSpaceIsReadAtAnyWidth() throws {
        let driver = try VirtioTestDriver(device: VirtioBlock(backend: MemoryBlockBackend(size: 1 << 20)))
        #expect(driver.transport.read(0x100, size: 8) == 2048)
        #expect(driver.transport.read(0x100, size: 4) == 2048)
        #expect(driver.transport.read(0x101, size: 1) == 8)
        #expect(driver.transport.read(0xFF8, size: 8) == 0, "past the config space")
    }

    @Test func badRingAddressAtDriverOKMeansNeedsReset() throws {
        let driver = try VirtioTestDriver(device: VirtioRNG())
        driver.initialize(driverOK: false)
        var queue = driver.queues[0]
        queue.used = 0x2000_0000  // not RAM
        driver.setQueue(0, queue)
        driver.setReg(0x70, 0x0F)
        #expect(driver.needsReset)
        #expect(driver.reg(0x60) & VirtioInterruptBit.configChange != 0)
        #expect(!driver.transport.isActive)
        #expect(driver.logs.all.count == 1)
        // A reset and a proper setup bring it back.
        #expect(driver.initialize())
        #expect(!driver.needsReset)
        #expect(driver.transport.isActive)
    }

    @Test(arguments: [UInt16(3), 0, 512])
    func badQueueSizeAtDriverOKMeansNeedsReset(size: UInt16) throws {
        let driver = try VirtioTestDriver(device: VirtioRNG())
        driver.initialize(driverOK: false)
        var queue = driver.queues[0]
        queue.size = size
        driver.setQueue(0, queue)
        driver.setReg(0x70, 0x0F)
        #expect(driver.needsReset)
    }

    @Test func misalignedRingsAreRefused() throws {
        let driver = try VirtioTestDriver(device: VirtioRNG())
        driver.initialize(driverOK: false)
        var queue = driver.queues[0]
        queue.desc += 8
        driver.setQueue(0, queue)
        driver.setReg(0x70, 0x0F)
        #expect(driver.needsReset)
    }

    @Test func unreadyQueuesAreLeftAlone() throws {
        let driver = try VirtioTestDriver(device: VirtioRNG())
        driver.initialize(driverOK: false)
        driver.setQueue(0, driver.queues[0], ready: false)
        driver.setReg(0x70, 0x0F)
        #expect(driver.transport.isActive)
        driver.post(0, [.writable(VirtioTestDriver.dataBase, 8)])
        driver.kick(0)
        #expect(driver.takeUsed(0).isEmpty)
        #expect(!driver.needsReset)
    }
}

/// A RAM-backed block backend for tests that do not need a file.
final class MemoryBlockBackend: BlockBackend, @unchecked Sendable {
    var bytes: [UInt8]
    let isReadOnly: Bool
    var size: UInt64 { UInt64(bytes.count) }

    init(size: Int, readOnly: Bool = false) {
        bytes = [UInt8](repeating: 0, count: size)
        isReadOnly = readOnly
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(BlockBackendError) {
        for index in 0..<buffer.count { buffer[index] = bytes[Int(offset) + index] }
    }

    func write(from buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(BlockBackendError) {
        for index in 0..<buffer.count { bytes[Int(offset) + index] = buffer[index] }
    }

    func flush() throws(BlockBackendError) {}
    func discard(at offset: UInt64, length: UInt64) throws(BlockBackendError) {}
    func writeZeroes(at offset: UInt64, length: UInt64, mayUnmap: Bool) throws(BlockBackendError) {
        for index in Int(offset)..<Int(offset + length) { bytes[index] = 0 }
    }
}

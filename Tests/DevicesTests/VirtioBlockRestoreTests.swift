import Memory
import Testing
@testable import Devices

/// A restored virtio-blk whose backend has another capacity than the snapshot's (the warm start of
/// image runs puts the run's disks where empty ones were) tells the driver: a new config generation
/// and one config-change interrupt, with the new capacity in config space.
@Suite struct VirtioBlockRestoreTests {
    /// Snapshot a running device over a `before`-byte disk, restore it over an `after`-byte disk.
    private func restore(before: Int, after: Int) throws -> (saved: VirtioTestDriver, restored: VirtioTestDriver) {
        let saved = try VirtioTestDriver(device: VirtioBlock(backend: MemoryBlockBackend(size: before)))
        #expect(saved.initialize())
        let state = saved.transport.saveState()
        let restored = try VirtioTestDriver(device: VirtioBlock(backend: MemoryBlockBackend(size: after)))
        try restored.transport.restoreState(state)
        return (saved, restored)
    }

    private func capacity(_ driver: VirtioTestDriver) -> UInt64 {
        UInt64(driver.reg(0x100)) | UInt64(driver.reg(0x104)) << 32
    }

    @Test func aNewCapacityRaisesAConfigChange() throws {
        let (saved, restored) = try restore(before: 0, after: 1 << 20)
        #expect(capacity(saved) == 0)
        #expect(capacity(restored) == 2048, "1 MiB in 512-byte sectors")
        #expect(restored.reg(0xFC) == saved.reg(0xFC) &+ 1, "config generation")
        #expect(restored.reg(0x60) & 2 != 0, "InterruptStatus has the config-change bit")
        #expect(restored.interrupt.raises == 1)
        #expect(restored.transport.isActive, "the device still runs the driver's queues")
    }

    @Test func theSameCapacityChangesNothing() throws {
        let (saved, restored) = try restore(before: 1 << 20, after: 1 << 20)
        #expect(restored.reg(0xFC) == saved.reg(0xFC))
        #expect(restored.reg(0x60) == 0)
        #expect(restored.interrupt.raises == 0)
    }
}

import Testing
import VireoTestSupport
@testable import Devices

/// Issue 11's device lifecycle: a paused device takes no work (and loses none), and a device's own
/// state (held frames, held chains) survives save and restore.
@Suite struct DeviceLifecycleTests {
    let data = VirtioTestDriver.dataBase

    private func makeNet() throws -> (VirtioTestDriver, VirtioNet, FakeNetBackend) {
        let backend = try FakeNetBackend()
        let net = try VirtioNet(backend: backend, mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56], log: { _ in })
        let driver = try VirtioTestDriver(device: net)
        #expect(driver.initialize())
        return (driver, net, backend)
    }

    private func transmit(_ driver: VirtioTestDriver, _ frame: [UInt8], at offset: UInt64 = 0) throws {
        try driver.memory.write([UInt8](repeating: 0, count: 12), at: data + offset)
        try driver.memory.write(frame, at: data + offset + 0x100)
        driver.post(1, [.readable(data + offset, 12), .readable(data + offset + 0x100, UInt32(frame.count))])
    }

    @Test func pausedDeviceDefersWorkAndResumeDoesIt() throws {
        let (driver, _, backend) = try makeNet()
        driver.transport.pauseDevice()
        #expect(driver.transport.isPaused)
        try transmit(driver, ethernetFrame(source: 1, payload: 50))
        driver.kick(1)
        #expect(backend.sent.isEmpty && driver.takeUsed(1).isEmpty, "a paused device touched the ring")
        driver.transport.resumeDevice()
        driver.transport.serviceDeferred()  // what the worker does when the resume notifier fires
        #expect(backend.sent.count == 1 && driver.takeUsed(1).count == 1)
    }

    @Test func heldTransmitFrameSurvivesSaveAndRestore() throws {
        let (driver, net, backend) = try makeNet()
        backend.blockSends = true
        let frame = ethernetFrame(source: 7, payload: 80)
        try transmit(driver, frame)
        driver.kick(1)
        #expect(backend.sent.isEmpty && net.txHeldLength == frame.count)
        let saved = net.snapshotState()

        let (restoredDriver, restored, restoredBackend) = try makeNet()
        try restored.restoreSnapshotState(saved, activation: nil)
        restoredDriver.transport.serviceEvent(2)  // the self-kick restore signalled
        #expect(restoredBackend.sent == [frame], "the frame the old backend never took is sent after restore")
    }

    @Test func heldChainIsRevalidatedOnRestore() throws {
        let (_, net, _) = try makeNet()
        // A held receive chain whose head is outside the ring is refused, not trusted.
        var w = StateWriter()
        w.u8(1); w.bool(true); w.u16(60000); w.blob([]); w.bool(false); w.blob([]); w.bool(false)
        #expect(throws: StateError.self) { try net.restoreSnapshotState(w.bytes, activation: nil) }
    }
}

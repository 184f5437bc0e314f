import Glibc
import Testing
@testable import Devices

/// Issue 12, finding 5: a guest that floods vsock control traffic without posting receive buffers
/// cannot grow the VMM's memory: the control queue is capped and CREDIT_REQUESTs fold into one reply.
@Suite struct VsockFloodTests {
    @Test func creditRequestFloodWithoutReceiveBuffersStaysBounded() throws {
        let h = try VsockHarness(bufferSlots: 0)
        let listener = try h.hostListen(port: 5100)
        defer { close(listener) }
        try h.send(.request, source: 900, destination: 5100)
        let server = accept(listener, nil, nil)
        defer { close(server) }
        #expect(server >= 0)
        for _ in 0..<3000 { try h.send(.creditRequest, source: 900, destination: 5100) }
        // The RESPONSE and one CREDIT_UPDATE wait; every other request was folded into that one.
        #expect(h.device.queuedControlPackets == 2, "queued: \(h.device.queuedControlPackets)")
        #expect(h.device.statistics.creditRequestsCoalesced == 2999)

        // Requests nobody answers each want a RESET: the queue stops at its cap and counts the rest.
        for port in 0..<(VirtioVsock.maxQueuedControl + 500) {
            try h.send(.request, source: UInt32(10_000 + port), destination: 6999)
        }
        #expect(h.device.queuedControlPackets == VirtioVsock.maxQueuedControl)
        #expect(h.device.statistics.controlDropped == 502)
        #expect(!h.driver.needsReset)

        // Once the guest posts buffers the queue drains in order: the response first, then one update.
        h.postBuffers(4)
        let first = try h.received().map { $0.header.operation }
        #expect(first == [.response, .creditUpdate, .reset, .reset], "\(first)")
        // Afterwards a new CREDIT_REQUEST is answered again (the fold is per queued update).
        #expect(h.device.queuedControlPackets == VirtioVsock.maxQueuedControl - 4)
    }
}

/// Issue 12, finding 5: a guest that violates the virtio protocol in a loop leaves a log that grows
/// logarithmically with the violations, not one line each.
@Suite struct ViolationLogTests {
    @Test func violationLinesAreRateLimited() throws {
        let h = try VsockHarness()
        for round in 0..<1000 {
            if round > 0 { #expect(h.driver.initialize(queueSize: VsockHarness.queueSize)) }
            h.driver.post(VirtioVsock.transmitQueue, [.readable(h.txArea, 20)])  // shorter than a header
            h.driver.kick(VirtioVsock.transmitQueue)
            #expect(h.driver.needsReset)
        }
        #expect(h.driver.transport.violationCount == 1000)
        let lines = h.driver.logs.all
        // 8 in full, then 16, 32, 64, 128, 256, 512.
        #expect(lines.count == 14, "\(lines.count) lines: \(lines.suffix(3))")
        #expect(lines.last?.contains("violation 512") == true)
    }
}

/// Issue 12, finding 5: the virtio-console file backend keeps at most its limit; the rest of the
/// guest's output is dropped and counted.
@Suite struct ConsoleFileBoundTests {
    @Test func fileBackendStopsAtItsLimit() throws {
        let file = TemporaryFile(size: 0)
        let device = try VirtioConsole(backend: .file(open(file.path, O_WRONLY | O_APPEND)), fileLimit: 1000)
        let driver = try VirtioTestDriver(device: device)
        #expect(driver.initialize())
        let chunk = [UInt8](repeating: 0x41, count: 600)
        try driver.memory.write(chunk, at: VirtioTestDriver.dataBase)
        for _ in 0..<5 {
            driver.post(VirtioConsole.transmitQueue, [.readable(VirtioTestDriver.dataBase, 600)])
            driver.kick(VirtioConsole.transmitQueue)
        }
        var info = stat()
        #expect(stat(file.path, &info) == 0 && info.st_size == 1000)
        #expect(device.statistics.bytesOut == 1000 && device.statistics.bytesDropped == 2000, "\(device.statistics)")
        #expect(!driver.needsReset)
    }
}

import Glibc
import Testing
@testable import Devices

/// virtio-balloon through the simulated driver: target, inflate/deflate with real page release, stats.
@Suite struct VirtioBalloonTests {
    static let inflate = 0, deflate = 1, stats = 2
    let data = VirtioTestDriver.dataBase
    /// PFN arrays live here; the pages given up are further up in the data window.
    var pfnArea: UInt64 { data }
    var firstPage: UInt64 { data + 0x20000 }

    func makeDriver(driverOK: Bool = true) throws -> (VirtioTestDriver, VirtioBalloon) {
        let balloon = try VirtioBalloon(guestMemoryBytes: 0x100000, targetPages: 16)
        let driver = try VirtioTestDriver(device: balloon)
        #expect(driver.initialize(driverOK: driverOK))
        return (driver, balloon)
    }

    func postPFNs(_ driver: VirtioTestDriver, queue: Int, _ pfns: [UInt32], at offset: UInt64 = 0) throws {
        var bytes: [UInt8] = []
        for pfn in pfns { bytes += [UInt8(pfn & 0xFF), UInt8(pfn >> 8 & 0xFF), UInt8(pfn >> 16 & 0xFF), UInt8(pfn >> 24)] }
        try driver.memory.write(bytes, at: pfnArea + offset)
        driver.post(queue, [.readable(pfnArea + offset, UInt32(bytes.count))])
        driver.kick(queue)
    }

    func resident(_ driver: VirtioTestDriver, _ address: UInt64) throws -> Bool {
        let view = try driver.memory.buffer(at: address, length: 4096)
        var vector: UInt8 = 0
        #expect(mincore(view.baseAddress, 4096, &vector) == 0)
        return vector & 1 == 1
    }

    @Test func configCarriesTargetAndActual() throws {
        let (driver, balloon) = try makeDriver()
        #expect(driver.transport.read(0x100, size: 4) == 16)
        #expect(balloon.setTarget(pages: 200))
        #expect(driver.transport.read(0x100, size: 4) == 200)
        #expect(!balloon.setTarget(pages: 257), "more than guest RAM")
        driver.transport.write(0x104, size: 4, value: 123)
        #expect(driver.transport.read(0x104, size: 4) == 123)
        #expect(balloon.statistics.actualPages == 123)
        driver.transport.write(0x100, size: 4, value: 999)  // num_pages is the host's
        #expect(balloon.statistics.targetPages == 200)
        let features = driver.offeredFeatures
        #expect(features & VirtioBalloon.featureStatisticsQueue != 0 && features & VirtioBalloon.featureDeflateOnOOM != 0)
        #expect(features & 1 == 0, "no MUST_TELL_HOST")
        #expect(driver.transport.read(0x008, size: 4) == 5)
    }

    @Test func inflateReleasesTheHostPagesAndDeflateCounts() throws {
        let (driver, balloon) = try makeDriver()
        let pages = (0..<8).map { firstPage + UInt64($0) * 4096 }
        for page in pages { try driver.memory.write([UInt8](repeating: 0xC3, count: 4096), at: page) }
        #expect(try pages.allSatisfy { try resident(driver, $0) })
        // Two runs of contiguous pages and a lone one, out of order.
        let pfns = [4, 5, 6, 7, 0, 1, 2].map { UInt32((firstPage >> 12) + $0) }
        try postPFNs(driver, queue: VirtioBalloonTests.inflate, pfns)
        #expect(driver.takeUsed(VirtioBalloonTests.inflate).count == 1)
        for (index, page) in pages.enumerated() {
            let given = index != 3
            #expect(try resident(driver, page) == !given, "page \(index)")
            let bytes = try driver.memory.readBytes(at: page, count: 4096)
            #expect(bytes.allSatisfy { $0 == (given ? 0 : 0xC3) }, "page \(index) reads as a fresh page")
        }
        #expect(balloon.statistics.inflatedPages == 7 && balloon.statistics.releasedPages == 7)
        try postPFNs(driver, queue: VirtioBalloonTests.deflate, Array(pfns[0..<3]), at: 0x100)
        #expect(balloon.statistics.inflatedPages == 4)
        #expect(!driver.needsReset && driver.guardIntact())
    }

    @Test(arguments: [UInt32(0x100), 0xFFFF_FFFF, 0x1_0000])
    func pageFramesOutsideRAMAreDeviceErrors(pfn: UInt32) throws {
        for queue in [VirtioBalloonTests.inflate, VirtioBalloonTests.deflate] {
            let (driver, balloon) = try makeDriver()
            try postPFNs(driver, queue: queue, [UInt32(firstPage >> 12), pfn])
            #expect(driver.needsReset, "queue \(queue), pfn \(pfn)")
            #expect(driver.logs.all.count == 1 && driver.logs.all[0].contains("not guest RAM"))
            #expect(driver.takeUsed(queue).isEmpty)
            #expect(balloon.statistics.inflatedPages == 0)
            #expect(driver.guardIntact())
        }
    }

    /// Writes a statistics buffer (tag, value pairs) and posts it.
    func postStatistics(_ driver: VirtioTestDriver, _ entries: [(UInt16, UInt64)], at offset: UInt64 = 0x1000) throws {
        var bytes: [UInt8] = []
        for (tag, value) in entries {
            bytes += [UInt8(tag & 0xFF), UInt8(tag >> 8)]
            for index in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(index)))) }
        }
        try driver.memory.write(bytes, at: data + offset)
        driver.post(VirtioBalloonTests.stats, [.readable(data + offset, UInt32(bytes.count))])
    }

    @Test func statisticsAreHeldAndRequested() throws {
        let (driver, balloon) = try makeDriver()
        try postStatistics(driver, [(4, 1000), (5, 5000), (6, 900)])
        driver.kick(VirtioBalloonTests.stats)
        #expect(driver.takeUsed(VirtioBalloonTests.stats).isEmpty, "held until the host wants more")
        var statistics = balloon.statistics
        #expect(statistics.guestStatistics == [4: 1000, 5: 5000, 6: 900] && statistics.statisticsUpdates == 1)
        balloon.requestStatistics()
        driver.transport.serviceEvent(0)
        #expect(driver.takeUsed(VirtioBalloonTests.stats).count == 1, "returned: the driver refills it")
        try postStatistics(driver, [(4, 800)], at: 0x2000)
        driver.kick(VirtioBalloonTests.stats)
        statistics = balloon.statistics
        #expect(statistics.guestStatistics[4] == 800 && statistics.statisticsUpdates == 2)
        // A second request with nothing held waits for the next buffer.
        balloon.requestStatistics()
        driver.transport.serviceEvent(0)
        #expect(driver.takeUsed(VirtioBalloonTests.stats).count == 1)
    }

    @Test func aStatisticsBufferQueuedBeforeDriverOKIsPickedUp() throws {
        let (driver, balloon) = try makeDriver(driverOK: false)
        try postStatistics(driver, [(5, 4242)])
        driver.kick(VirtioBalloonTests.stats)  // Linux notifies before DRIVER_OK: nothing runs yet
        #expect(balloon.statistics.statisticsUpdates == 0)
        driver.setReg(0x70, VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK | VirtioStatus.driverOK)
        driver.transport.serviceEvent(0)       // the device's own kick from activate
        #expect(balloon.statistics.guestStatistics[5] == 4242)
    }
}

/// virtio-console with a file and with a socket client.
@Suite struct VirtioConsoleTests {
    let data = VirtioTestDriver.dataBase

    @Test func outputIsAppendedToTheFile() throws {
        let file = TemporaryFile(size: 0)
        let fd = open(file.path, O_WRONLY | O_APPEND)
        let console = try VirtioConsole(backend: .file(fd))
        let driver = try VirtioTestDriver(device: console)
        #expect(driver.initialize())
        try driver.memory.write(Array("hello ".utf8), at: data)
        try driver.memory.write(Array("hvc0\n".utf8), at: data + 0x100)
        driver.post(1, [.readable(data, 6), .readable(data + 0x100, 5)])
        driver.kick(1)
        #expect(driver.takeUsed(1).count == 1)
        #expect(file.read(at: 0, count: 11) == Array("hello hvc0\n".utf8))
        #expect(console.statistics.bytesOut == 11)
        #expect(driver.transport.read(0x008, size: 4) == 3)
    }

    @Test func aSocketClientGetsOutputAndTypesInput() throws {
        let path = "/tmp/vireo-hvc-\(getpid()).sock"
        defer { unlink(path) }
        let console = try VirtioConsole(backend: .socket(listener: try UnixSockets.listen(path: path)))
        let driver = try VirtioTestDriver(device: console)
        #expect(driver.initialize())
        // Output with nobody connected is dropped, not queued forever.
        try driver.memory.write(Array("lost".utf8), at: data)
        driver.post(1, [.readable(data, 4)])
        driver.kick(1)
        #expect(console.statistics.bytesDropped == 4)
        let client = try UnixSockets.connect(path: path)
        defer { close(client) }
        driver.transport.serviceEvent(0)
        try driver.memory.write(Array("login: ".utf8), at: data)
        driver.post(1, [.readable(data, 7)])
        driver.kick(1)
        usleep(10_000)
        #expect(readSome(client) == Array("login: ".utf8))
        // Input waits for a receive buffer.
        writeString(client, "root\n")
        driver.transport.serviceEvent(0)
        #expect(driver.takeUsed(0).isEmpty)
        driver.post(0, [.writable(data + 0x1000, 64)])
        driver.kick(0)
        let used = driver.takeUsed(0)
        #expect(used.count == 1 && used.first?.length == 5)
        #expect(try driver.memory.readBytes(at: data + 0x1000, count: 5) == Array("root\n".utf8))
        #expect(console.statistics.bytesIn == 5)
    }
}

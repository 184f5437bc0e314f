import Glibc
import Memory
import Synchronization
import Testing
@testable import Devices

/// The worker thread: queue work happens there, concurrently with register traffic from "vCPUs".
@Suite struct VirtioConcurrencyTests {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Keeps posting rng requests from one thread, notifying through the MMIO register, while the
    /// worker consumes them; every request must come back exactly once.
    @Test func notificationsFromAnotherThreadWhileTheWorkerProcesses() throws {
        let rng = VirtioRNG()
        let driver = try VirtioTestDriver(device: rng)
        driver.initialize(queueSize: 16)
        try driver.transport.startWorker()
        defer { driver.transport.stopWorker() }

        let total = 5_000
        let box = UncheckedBox(driver)
        let outcome = Mutex<(completed: Int, duplicates: Int, timedOut: Bool)>((0, 0, false))
        let thread = startThread {
            let driver = box.value
            var outstanding = Set<UInt32>(), posted = 0, completed = 0, duplicates = 0
            let deadline = VirtioConcurrencyTests.now() + 30
            while completed < total {
                while posted < total && outstanding.count < 16 {
                    let slot = UInt64(posted % 16)
                    let head = driver.post(0, [.writable(VirtioTestDriver.dataBase + slot * 64, 64)])
                    outstanding.insert(UInt32(head))
                    posted += 1
                    // Every few buffers, as a driver with EVENT_IDX would.
                    if posted % 3 == 0 { driver.setReg(0x50, 0) }
                }
                driver.setReg(0x50, 0)
                for entry in driver.takeUsed(0) {
                    if outstanding.remove(entry.id) == nil { duplicates += 1 }
                    completed += 1
                }
                if VirtioConcurrencyTests.now() > deadline {
                    outcome.withLock { $0.timedOut = true }
                    break
                }
                sched_yield()
            }
            outcome.withLock { $0.completed = completed; $0.duplicates = duplicates }
        }
        pthread_join(thread, nil)
        let result = outcome.withLock { $0 }
        #expect(!result.timedOut)
        #expect(result.completed == total)
        #expect(result.duplicates == 0)
        #expect(rng.bytesServed == UInt64(total) * 64)
        #expect(!driver.needsReset)
        #expect(driver.interrupt.raises > 0)
        #expect(driver.guardIntact())
    }

    /// Resets and re-initialisations from the "vCPU" thread race the worker's processing: nothing may
    /// crash, hang or write outside the rings and data window, and the device must work afterwards.
    @Test func resetsRaceTheWorker() throws {
        let block = VirtioBlock(backend: MemoryBlockBackend(size: 64 * 512))
        let driver = try VirtioTestDriver(device: block)
        driver.initialize()
        try driver.transport.startWorker()
        var random = SplitMix64(seed: 0x5EED)
        var outstanding = 0
        let deadline = VirtioConcurrencyTests.now() + 30
        for round in 0..<2_000 {
            // Three descriptors per request in a 16-entry table: at most five in flight, as a driver would.
            outstanding -= driver.takeUsed(0).count
            while outstanding >= 5 && VirtioConcurrencyTests.now() < deadline {
                sched_yield()
                outstanding -= driver.takeUsed(0).count
            }
            try driver.memory.write(UInt32(round % 2), at: VirtioTestDriver.dataBase)  // read or write
            try driver.memory.write(UInt64(round % 60), at: VirtioTestDriver.dataBase + 8)
            driver.post(0, [.readable(VirtioTestDriver.dataBase, 16), .writable(VirtioTestDriver.dataBase + 0x1000, 2048),
                            .writable(VirtioTestDriver.dataBase + 0x2000, 1)])
            outstanding += 1
            driver.setReg(0x50, 0)
            if random.next() % 8 == 0 {
                driver.initialize()
                outstanding = 0
            }
            if random.next() % 16 == 0 { usleep(50) }
        }
        driver.transport.stopWorker()
        #expect(VirtioConcurrencyTests.now() < deadline, "the worker kept up")
        #expect(!driver.needsReset, "\(driver.logs.all)")
        #expect(driver.guardIntact())
        #expect(block.statistics.requests > 0)

        // Synchronously, after the storm, the device still answers.
        driver.initialize()
        try driver.memory.write(UInt32(0), at: VirtioTestDriver.dataBase)
        try driver.memory.write(UInt64(0), at: VirtioTestDriver.dataBase + 8)
        driver.post(0, [.readable(VirtioTestDriver.dataBase, 16), .writable(VirtioTestDriver.dataBase + 0x2000, 1)])
        driver.kick(0)
        #expect(driver.takeUsed(0).count == 1)
    }

    /// Queue work runs on the worker, never on the thread that wrote QueueNotify.
    @Test func processingHappensOnTheWorkerThread() throws {
        let device = ThreadRecordingDevice()
        let driver = try VirtioTestDriver(device: device)
        driver.initialize()
        try driver.transport.startWorker()
        driver.setReg(0x50, 0)
        let deadline = VirtioConcurrencyTests.now() + 10
        while device.threads.isEmpty && VirtioConcurrencyTests.now() < deadline { usleep(1000) }
        driver.transport.stopWorker()
        #expect(device.threads.count == 1)
        #expect(device.threads.first.map { pthread_equal($0, pthread_self()) == 0 } == true)
    }

    @Test func workerStartsAndStopsRepeatedly() throws {
        let driver = try VirtioTestDriver(device: VirtioRNG())
        driver.initialize()
        for _ in 0..<50 {
            try driver.transport.startWorker()
            try driver.transport.startWorker()  // idempotent
            driver.post(0, [.writable(VirtioTestDriver.dataBase, 8)])
            driver.setReg(0x50, 0)
            driver.transport.stopWorker()
            driver.transport.stopWorker()
        }
        // Whatever the workers did not get to is still there to process.
        driver.transport.queueNotifiers[0].signal()
        driver.transport.processNotifications()
        #expect(driver.takeUsed(0).count == 50)
    }

    @Test func deviceEventSourcesWakeTheWorker() throws {
        let device = ThreadRecordingDevice()
        let driver = try VirtioTestDriver(device: device)
        driver.initialize()
        try driver.transport.startWorker()
        device.source.signal()
        let deadline = VirtioConcurrencyTests.now() + 10
        while device.events.load(ordering: .relaxed) == 0 && VirtioConcurrencyTests.now() < deadline { usleep(1000) }
        driver.transport.stopWorker()
        #expect(device.events.load(ordering: .relaxed) == 1)
    }
}

/// Lets a non-Sendable test object cross into a thread the test joins before touching it again.
final class UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Records the threads its queue work runs on and counts backend events.
final class ThreadRecordingDevice: VirtioDevice, @unchecked Sendable {
    private let seen = Mutex<[pthread_t]>([])
    let events = Atomic<Int>(0)
    let source = try! EventFD()

    var threads: [pthread_t] { seen.withLock { $0 } }
    var deviceType: VirtioDeviceType { .entropy }
    var deviceFeatures: UInt64 { 0 }
    var queueMaxSizes: [UInt16] { [16] }
    var eventSources: [Int32] { [source.fd] }

    func readConfig(offset: UInt64, into data: UnsafeMutableRawBufferPointer) { data.storeAccessValue(0) }

    func processQueue(_ index: Int, activation: VirtioActivation) throws(VirtioError) {
        seen.withLock { $0.append(pthread_self()) }
    }

    func handleEvent(source index: Int, activation: VirtioActivation?) throws(VirtioError) {
        source.consume()
        events.add(1, ordering: .relaxed)
    }
}

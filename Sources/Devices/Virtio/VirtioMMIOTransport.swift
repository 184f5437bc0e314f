import Memory
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A virtio device behind a virtio-mmio version 2 (modern only) register window.
///
/// Register it on the MMIO bus with length `windowSize`. vCPU threads drive the registers; the
/// device's queues are serviced by its worker thread (`startWorker`), woken by `queueNotifiers` —
/// signalled either by a QueueNotify write arriving here or, with no exit at all, by KVM when the
/// VMM registers each notifier as an ioeventfd at base + `queueNotifyOffset` (4 bytes, datamatch = queue index).
///
/// Locks: `engine` (activation; held while a queue is processed) is taken before `registers`, never after.
public final class VirtioMMIOTransport: BusDevice, Sendable {
    public static let magicValue: UInt32 = 0x7472_6976
    public static let version: UInt32 = 2
    /// "VIRO", little-endian.
    public static let vendorID: UInt32 = 0x4F52_4956
    /// Bytes of MMIO space each device decodes (registers, then config space at 0x100).
    public static let windowSize: UInt64 = 0x1000
    /// Offset of QueueNotify, where a queue's ioeventfd goes.
    public static let queueNotifyOffset: UInt64 = VirtioMMIORegister.queueNotify
    /// Features the transport and VirtQueue implement for every device.
    public static let transportFeatures = VirtioFeature.version1 | VirtioFeature.eventIndex
        | VirtioFeature.indirectDescriptors

    public let device: any VirtioDevice
    public let memory: GuestMemory
    public let interrupt: any VirtioInterrupt
    /// One doorbell per queue, signalled when the driver notifies that queue.
    public let queueNotifiers: [EventFD]
    /// Signalled by `resumeDevice` so the worker services what arrived while the device was paused.
    let resumeNotifier: EventFD
    /// DeviceFeatures as the driver sees them.
    public let offeredFeatures: UInt64
    /// Used in log lines and the worker thread's name.
    public let name: String
    let log: @Sendable (String) -> Void

    struct QueueRegisters {
        var size: UInt16 = 0
        var ready = false
        var layout = VirtQueueLayout(size: 0, descriptorTable: 0, availableRing: 0, usedRing: 0)
    }

    struct Registers {
        var status: UInt32 = 0
        var deviceFeaturesSel: UInt32 = 0
        var driverFeaturesSel: UInt32 = 0
        var driverFeatures: UInt64 = 0
        var queueSel: UInt32 = 0
        var queues: [QueueRegisters]
        var configGeneration: UInt32 = 0

        init(queueCount: Int) { queues = Array(repeating: QueueRegisters(), count: queueCount) }
    }

    struct Engine {
        var activation: VirtioActivation?
        var violations = 0
        /// Set by `pauseDevice`: work that arrives is only recorded (bit per queue / event source).
        var paused = false
        var deferredQueues: UInt64 = 0
        var deferredEvents: UInt64 = 0
    }

    let queueMaxSizes: [UInt16]
    let registers: Mutex<Registers>
    let engine = Mutex(Engine())
    /// Mirrors of `engine.activation != nil` and `engine.violations` for readers on other threads.
    let activeFlag = Atomic<Bool>(false)
    let violationTotal = Atomic<Int>(0)
    /// InterruptStatus; changes and their delivery happen under this lock so a level line never lags.
    let interruptState = Mutex<UInt32>(0)
    private let worker = Mutex<VirtioWorker?>(nil)

    /// `log` receives one line per device failure (default: stderr).
    public init(device: any VirtioDevice, memory: GuestMemory, interrupt: any VirtioInterrupt, name: String = "virtio",
                log: @escaping @Sendable (String) -> Void = VirtioMMIOTransport.logToStandardError) throws(EventFDError) {
        self.device = device
        self.memory = memory
        self.interrupt = interrupt
        self.name = name
        self.log = log
        queueMaxSizes = device.queueMaxSizes
        var notifiers: [EventFD] = []
        for _ in queueMaxSizes { notifiers.append(try EventFD()) }
        queueNotifiers = notifiers
        resumeNotifier = try EventFD()
        offeredFeatures = device.deviceFeatures | VirtioMMIOTransport.transportFeatures
        registers = Mutex(Registers(queueCount: queueMaxSizes.count))
    }

    /// Writes `message` to stderr in one write(2).
    public static func logToStandardError(_ message: String) {
        var line = "vireo: " + message + "\n"
        line.withUTF8 { bytes in _ = Glibc.write(2, bytes.baseAddress, bytes.count) }
    }

    // MARK: state for the VMM, tests and metrics

    /// The Status register.
    public var status: UInt32 { registers.withLock { $0.status } }
    /// The InterruptStatus register.
    public var interruptStatus: UInt32 { interruptState.withLock { $0 } }
    /// True between a successful DRIVER_OK and the next reset or violation. Never waits for the
    /// engine lock, which the worker holds across blocking backend I/O (pread, fsync).
    public var isActive: Bool { activeFlag.load(ordering: .relaxed) }
    /// Protocol violations seen since creation (each one set NEEDS_RESET); lock-free like `isActive`.
    public var violationCount: Int { violationTotal.load(ordering: .relaxed) }

    // MARK: BusDevice

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        if offset >= VirtioMMIORegister.config {
            device.readConfig(offset: offset - VirtioMMIORegister.config, into: data)
            return
        }
        // The register file is 32-bit only (§4.2.2.2); anything else reads as zero.
        guard data.count == 4, offset % 4 == 0 else { data.storeAccessValue(0); return }
        data.storeAccessValue(UInt64(readRegister(offset)))
    }

    public func write(offset: UInt64, from data: UnsafeRawBufferPointer) {
        if offset >= VirtioMMIORegister.config {
            device.writeConfig(offset: offset - VirtioMMIORegister.config, from: data)
            return
        }
        guard data.count == 4, offset % 4 == 0 else { return }
        writeRegister(offset, UInt32(truncatingIfNeeded: data.loadAccessValue()))
    }

    private func readRegister(_ offset: UInt64) -> UInt32 {
        typealias R = VirtioMMIORegister
        switch offset {
        case R.magicValue: return VirtioMMIOTransport.magicValue
        case R.version: return VirtioMMIOTransport.version
        case R.deviceID: return device.deviceType.rawValue
        case R.vendorID: return VirtioMMIOTransport.vendorID
        case R.interruptStatus: return interruptStatus
        case R.shmLenLow...R.shmBaseHigh: return UInt32.max  // no shared memory regions
        default: break
        }
        return registers.withLock { r -> UInt32 in
            let selected = Int(r.queueSel) < r.queues.count ? Int(r.queueSel) : nil
            switch offset {
            case R.deviceFeatures:
                return r.deviceFeaturesSel < 2 ? UInt32(truncatingIfNeeded: offeredFeatures >> (32 * UInt64(r.deviceFeaturesSel))) : 0
            case R.deviceFeaturesSel: return r.deviceFeaturesSel
            case R.driverFeatures:
                return r.driverFeaturesSel < 2 ? UInt32(truncatingIfNeeded: r.driverFeatures >> (32 * UInt64(r.driverFeaturesSel))) : 0
            case R.driverFeaturesSel: return r.driverFeaturesSel
            case R.queueSel: return r.queueSel
            case R.queueNumMax: return selected.map { UInt32(queueMaxSizes[$0]) } ?? 0
            case R.queueNum: return selected.map { UInt32(r.queues[$0].size) } ?? 0
            case R.queueReady: return selected.map { r.queues[$0].ready ? 1 : 0 } ?? 0
            case R.status: return r.status
            case R.queueDescLow, R.queueDescHigh, R.queueDriverLow, R.queueDriverHigh, R.queueDeviceLow, R.queueDeviceHigh:
                guard let selected else { return 0 }
                let layout = r.queues[selected].layout
                let address = offset < R.queueDriverLow ? layout.descriptorTable
                    : offset < R.queueDeviceLow ? layout.availableRing : layout.usedRing
                return UInt32(truncatingIfNeeded: offset % 8 == 0 ? address : address >> 32)
            case R.configGeneration: return r.configGeneration
            default: return 0
            }
        }
    }

    private func writeRegister(_ offset: UInt64, _ value: UInt32) {
        typealias R = VirtioMMIORegister
        switch offset {
        case R.queueNotify:
            // Without VIRTIO_F_NOTIFICATION_DATA the value is just the queue index.
            if Int(value) < queueNotifiers.count { queueNotifiers[Int(value)].signal() }
            return
        case R.interruptACK:
            interruptState.withLock { pending in
                pending &= ~value
                interrupt.interruptStatusChanged(pending: pending, raised: false)
            }
            return
        case R.status:
            writeStatus(value)
            return
        default: break
        }
        registers.withLock { r in
            // Queue registers are frozen once the device runs: the worker owns the rings then.
            let configurable = r.status & VirtioStatus.driverOK == 0
            let selected = configurable && Int(r.queueSel) < r.queues.count ? Int(r.queueSel) : nil
            switch offset {
            case R.deviceFeaturesSel: r.deviceFeaturesSel = value
            case R.driverFeaturesSel: r.driverFeaturesSel = value
            case R.driverFeatures:
                guard r.status & VirtioStatus.featuresOK == 0, r.driverFeaturesSel < 2 else { return }
                let shift = 32 * UInt64(r.driverFeaturesSel)
                r.driverFeatures = r.driverFeatures & ~(UInt64(UInt32.max) << shift) | UInt64(value) << shift
            case R.queueSel: r.queueSel = value
            case R.queueNum: if let selected { r.queues[selected].size = UInt16(truncatingIfNeeded: value) }
            case R.queueReady: if let selected { r.queues[selected].ready = value & 1 == 1 }
            case R.queueDescLow, R.queueDescHigh, R.queueDriverLow, R.queueDriverHigh, R.queueDeviceLow, R.queueDeviceHigh:
                guard let selected else { return }
                let high = offset % 8 != 0
                func merge(_ old: UInt64) -> UInt64 {
                    high ? old & 0xFFFF_FFFF | UInt64(value) << 32 : old & ~0xFFFF_FFFF | UInt64(value)
                }
                if offset < R.queueDriverLow {
                    r.queues[selected].layout.descriptorTable = merge(r.queues[selected].layout.descriptorTable)
                } else if offset < R.queueDeviceLow {
                    r.queues[selected].layout.availableRing = merge(r.queues[selected].layout.availableRing)
                } else {
                    r.queues[selected].layout.usedRing = merge(r.queues[selected].layout.usedRing)
                }
            default: break
            }
        }
    }

    // MARK: status, activation, reset

    private func writeStatus(_ value: UInt32) {
        engine.withLock { engine in
            if value == 0 {
                resetLocked(&engine)
                return
            }
            let plan = registers.withLock { r -> (UInt64, [QueueRegisters])? in
                let old = r.status
                // Only a reset clears bits; the driver adds them one step at a time.
                var next = (value & 0xFF) | old
                let newBits = next & ~old
                if newBits & VirtioStatus.featuresOK != 0 && !acceptable(r.driverFeatures) {
                    next &= ~VirtioStatus.featuresOK
                }
                var activate = false
                if newBits & VirtioStatus.driverOK != 0 {
                    if next & VirtioStatus.featuresOK == 0 || old & VirtioStatus.needsReset != 0 {
                        next &= ~VirtioStatus.driverOK
                    } else {
                        activate = true
                    }
                }
                r.status = next
                return activate ? (r.driverFeatures, r.queues) : nil
            }
            guard let (features, queues) = plan else { return }
            do throws(VirtioError) {
                var built: [VirtQueue?] = []
                for (index, queue) in queues.enumerated() {
                    guard queue.ready else { built.append(nil); continue }
                    guard queue.size <= queueMaxSizes[index] else {
                        throw .queueLayout(queue: index, "size \(queue.size) exceeds QueueNumMax \(queueMaxSizes[index])")
                    }
                    var layout = queue.layout
                    layout.size = queue.size
                    built.append(try VirtQueue(index: index, layout: layout, memory: memory, features: features))
                }
                let activation = VirtioActivation(memory: memory, features: features, queues: built)
                try device.activate(activation)
                engine.activation = activation
                activeFlag.store(true, ordering: .relaxed)
            } catch {
                failLocked(&engine, error)
            }
        }
    }

    /// FEATURES_OK is granted only for a subset of what was offered that includes VERSION_1.
    private func acceptable(_ features: UInt64) -> Bool {
        features & ~offeredFeatures == 0 && features & VirtioFeature.version1 != 0
    }

    private func resetLocked(_ engine: inout Engine) {
        engine.activation = nil
        activeFlag.store(false, ordering: .relaxed)
        device.reset()
        registers.withLock { r in
            let generation = r.configGeneration
            r = Registers(queueCount: queueMaxSizes.count)
            r.configGeneration = generation
        }
        interruptState.withLock { pending in
            pending = 0
            interrupt.interruptStatusChanged(pending: 0, raised: false)
        }
        // Kicks from before the reset refer to rings that no longer exist.
        for notifier in queueNotifiers { notifier.consume() }
    }

    /// Violations logged one line each before the log is thinned out.
    static let violationsLoggedInFull = 8

    /// Whether the `count`th violation gets a log line: the first few, then powers of two.
    static func logsViolation(_ count: Int) -> Bool {
        count <= violationsLoggedInFull || count & (count - 1) == 0
    }

    /// Stops the device until the driver resets it: NEEDS_RESET, a config interrupt, and a log
    /// line (rate-limited).
    private func failLocked(_ engine: inout Engine, _ error: VirtioError) {
        engine.activation = nil
        activeFlag.store(false, ordering: .relaxed)
        engine.violations += 1
        violationTotal.store(engine.violations, ordering: .relaxed)
        let running = registers.withLock { r -> Bool in
            r.status |= VirtioStatus.needsReset
            return r.status & VirtioStatus.driverOK != 0
        }
        // A looping guest can violate the protocol endlessly: log the first few, then only the
        // 16th, 32nd, 64th… (with the count), so the VMM's log grows logarithmically, not linearly.
        let count = engine.violations
        if VirtioMMIOTransport.logsViolation(count) {
            let suffix = count < VirtioMMIOTransport.violationsLoggedInFull ? "" : " (violation \(count); later ones are logged at powers of two)"
            log("\(name): \(error); device needs reset\(suffix)")
        }
        if running { raise(VirtioInterruptBit.configChange) }
    }

    private func raise(_ bit: UInt32) {
        interruptState.withLock { pending in
            pending |= bit
            interrupt.interruptStatusChanged(pending: pending, raised: true)
        }
    }

    /// Tells the driver the device's config space changed (e.g. a resized disk).
    public func signalConfigChange() {
        let running = registers.withLock { r -> Bool in
            r.configGeneration &+= 1
            return r.status & VirtioStatus.driverOK != 0
        }
        if running { raise(VirtioInterruptBit.configChange) }
    }

    // MARK: queue work (worker thread)

    /// Lets the device consume queue `index`, then interrupts if the driver wants it.
    func serviceQueue(_ index: Int) {
        engine.withLock { engine in
            if engine.paused { engine.deferredQueues |= 1 << UInt64(index & 63); return }
            guard let activation = engine.activation, activation.queue(index) != nil else { return }
            do throws(VirtioError) {
                try device.processQueue(index, activation: activation)
                try interruptIfNeeded(activation)
            } catch {
                failLocked(&engine, error)
            }
        }
    }

    /// Lets the device react to one of its `eventSources`.
    func serviceEvent(_ source: Int) {
        engine.withLock { engine in
            if engine.paused { engine.deferredEvents |= 1 << UInt64(source & 63); return }
            let activation = engine.activation
            do throws(VirtioError) {
                try device.handleEvent(source: source, activation: activation)
                if let activation { try interruptIfNeeded(activation) }
            } catch {
                if activation != nil { failLocked(&engine, error) }
            }
        }
    }

    private func interruptIfNeeded(_ activation: VirtioActivation) throws(VirtioError) {
        var wanted = false
        for case let queue? in activation.queues {
            // Every queue is asked: the check also advances its EVENT_IDX bookkeeping.
            if try queue.needsNotification() { wanted = true }
        }
        if wanted { raise(VirtioInterruptBit.usedBuffer) }
    }

    /// Services every queue whose notifier was signalled, on the calling thread; the worker does the
    /// same when woken. For tests and embedders without a worker.
    public func processNotifications() {
        for (index, notifier) in queueNotifiers.enumerated() where notifier.consume() > 0 { serviceQueue(index) }
    }

    // MARK: worker

    /// Starts the device's worker thread (epoll over the queue notifiers and the device's event
    /// sources); `threadStart` runs first on it, given the device's name.
    public func startWorker(threadStart: (@Sendable (String) -> Void)? = nil) throws(VirtioWorkerError) {
        try worker.withLock { (current) throws(VirtioWorkerError) in
            guard current == nil else { return }
            current = try VirtioWorker(transport: self, threadStart: threadStart)
        }
    }

    /// Stops and joins the worker thread; queue work in progress finishes first.
    public func stopWorker() {
        let running = worker.withLock { current -> VirtioWorker? in
            defer { current = nil }
            return current
        }
        running?.stop()
    }
}

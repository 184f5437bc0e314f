import Memory
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What the balloon device knows (read from any thread).
public struct BalloonStatistics: Sendable, Equatable {
    /// Pages the host asks the guest to give up (config `num_pages`).
    public var targetPages: UInt32 = 0
    /// Pages the driver says are in the balloon (config `actual`, written by the guest).
    public var actualPages: UInt32 = 0
    /// Pages inflated minus pages deflated, as the queues reported them.
    public var inflatedPages: UInt64 = 0
    /// Pages whose host memory was released with MADV_DONTNEED, ever.
    public var releasedPages: UInt64 = 0
    /// The guest's last memory statistics (VIRTIO_BALLOON_F_STATS_VQ), by tag.
    public var guestStatistics: [UInt16: UInt64] = [:]
    /// Times the guest sent statistics.
    public var statisticsUpdates: UInt64 = 0

    public init() {}

    /// JSON names of the statistics tags (virtio 1.2 §5.5.6.3).
    public static let tagNames: [UInt16: String] = [
        0: "swap_in", 1: "swap_out", 2: "major_faults", 3: "minor_faults", 4: "free_memory", 5: "total_memory",
        6: "available_memory", 7: "disk_caches", 8: "hugetlb_allocations", 9: "hugetlb_failures",
    ]
}

/// virtio-balloon (type 5, virtio 1.2 §5.5): inflate, deflate and statistics queues.
///
/// The host sets a target (`setTarget`, then the transport's `signalConfigChange`); the driver
/// inflates by sending page frame numbers (4 KiB pages), and the device releases each page's host
/// memory with madvise(MADV_DONTNEED) through GuestMemory's bounds-checked views — a PFN outside
/// guest RAM is a device error (NEEDS_RESET), never a host access. Deflated pages need nothing: the
/// guest touching them again faults fresh zero pages in. Features: STATS_VQ and DEFLATE_ON_OOM.
/// The statistics buffer is held by the device and returned when `requestStatistics` asks for a
/// fresh set (the driver refills it).
/// @unchecked Sendable: The held statistics chain is touched only by the device's worker, under the transport's engine lock; what other threads read (statistics, target) sits in a Mutex or an Atomic.
public final class VirtioBalloon: VirtioDevice, @unchecked Sendable {
    public static let inflateQueue = 0, deflateQueue = 1, statisticsQueue = 2
    public static let queueSize: UInt16 = 256
    public static let pageSize: UInt64 = 4096
    public static let featureStatisticsQueue: UInt64 = 1 << 1
    public static let featureDeflateOnOOM: UInt64 = 1 << 2
    /// Statistics entries read from one buffer at most (the spec defines 10 tags).
    static let maxStatisticsEntries = 64

    /// Guest RAM pages (4 KiB), the upper bound for a target.
    public let guestPages: UInt64
    private let state = Mutex(BalloonStatistics())
    private let statisticsKick: EventFD
    private let statisticsWanted = Atomic<Bool>(false)
    private let hostPageSize = UInt64(sysconf(Int32(_SC_PAGESIZE)))
    /// The held statistics buffer (worker thread only).
    private var statisticsChain: DescriptorChain?

    public init(guestMemoryBytes: UInt64, targetPages: UInt32 = 0) throws(EventFDError) {
        guestPages = guestMemoryBytes / VirtioBalloon.pageSize
        statisticsKick = try EventFD()
        state.withLock { $0.targetPages = targetPages }
    }

    public var statistics: BalloonStatistics { state.withLock { $0 } }

    /// Sets the saved target, size and counters of a snapshot (VirtioBalloon+Snapshot).
    func restoreCounters(target: UInt32, actual: UInt32, inflated: UInt64, released: UInt64) {
        state.withLock {
            $0.targetPages = target
            $0.actualPages = actual
            $0.inflatedPages = inflated
            $0.releasedPages = released
        }
    }

    /// Sets the balloon's target size in 4 KiB pages; false when it exceeds guest RAM. The caller
    /// then tells the driver (`VirtioMMIOTransport.signalConfigChange`).
    @discardableResult
    public func setTarget(pages: UInt64) -> Bool {
        guard pages <= guestPages, pages <= UInt64(UInt32.max) else { return false }
        state.withLock { $0.targetPages = UInt32(pages) }
        return true
    }

    /// Asks the driver for fresh memory statistics (answered asynchronously).
    public func requestStatistics() {
        statisticsWanted.store(true, ordering: .releasing)
        statisticsKick.signal()
    }

    public var deviceType: VirtioDeviceType { .balloon }
    public var deviceFeatures: UInt64 { VirtioBalloon.featureStatisticsQueue | VirtioBalloon.featureDeflateOnOOM }
    public var queueMaxSizes: [UInt16] { [VirtioBalloon.queueSize, VirtioBalloon.queueSize, VirtioBalloon.queueSize] }

    public func readConfig(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        let (target, actual) = state.withLock { ($0.targetPages, $0.actualPages) }
        var config = VirtioConfigSpace(size: 8)
        config.set(target, at: 0)
        config.set(actual, at: 4)
        config.read(offset: offset, into: data)
    }

    /// The driver writes `actual` (offset 4); `num_pages` is the host's.
    public func writeConfig(offset: UInt64, from data: UnsafeRawBufferPointer) {
        guard offset >= 4, offset < 8, offset + UInt64(data.count) <= 8 else { return }
        state.withLock { s in
            var bytes = withUnsafeBytes(of: s.actualPages.littleEndian) { Array($0) }
            for index in 0..<data.count { bytes[Int(offset) - 4 + index] = data[index] }
            s.actualPages = bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
        }
    }

    public var eventSources: [Int32] { [statisticsKick.fd] }

    /// Linux queues its first statistics buffer before DRIVER_OK, so its notification found no
    /// running device: look at the statistics queue once the device runs.
    public func activate(_ activation: VirtioActivation) throws(VirtioError) {
        statisticsKick.signal()
    }

    public func reset() {
        statisticsChain = nil
        state.withLock { $0.actualPages = 0 }
    }

    public func handleEvent(source: Int, activation: VirtioActivation?) throws(VirtioError) {
        statisticsKick.consume()
        guard let activation, activation.queue(VirtioBalloon.statisticsQueue) != nil else { return }
        try processQueue(VirtioBalloon.statisticsQueue, activation: activation)
        guard let queue = activation.queue(VirtioBalloon.statisticsQueue), let chain = statisticsChain,
              statisticsWanted.exchange(false, ordering: .acquiringAndReleasing) else { return }
        statisticsChain = nil
        try queue.addUsed(head: chain.head, length: 0)
    }

    public func processQueue(_ index: Int, activation: VirtioActivation) throws(VirtioError) {
        guard let queue = activation.queue(index) else { return }
        while let chain = try queue.popAvailable() {
            switch index {
            case VirtioBalloon.inflateQueue, VirtioBalloon.deflateQueue:
                try pages(chain, inflate: index == VirtioBalloon.inflateQueue, memory: activation.memory)
                try queue.addUsed(head: chain.head, length: 0)
            case VirtioBalloon.statisticsQueue:
                try readStatistics(chain, memory: activation.memory)
                if let previous = statisticsChain { try queue.addUsed(head: previous.head, length: 0) }
                statisticsChain = chain  // kept until the next request for statistics
            default:
                try queue.addUsed(head: chain.head, length: 0)
            }
        }
    }

    /// One inflate or deflate buffer: little-endian 32-bit PFNs, validated one by one.
    private func pages(_ chain: DescriptorChain, inflate: Bool, memory: GuestMemory) throws(VirtioError) {
        let count = chain.readableLength / 4
        var offset = 0
        var run: (start: UnsafeMutableRawPointer, length: Int)?
        var released: UInt64 = 0
        func release() {
            guard let current = run else { return }
            run = nil
            // Page-aligned by construction: regions are mmapped and PFNs are page numbers.
            if hostPageSize == VirtioBalloon.pageSize, madvise(current.start, current.length, MADV_DONTNEED) == 0 {
                released += UInt64(current.length) / VirtioBalloon.pageSize
            }
        }
        while offset < count {
            let batch = min(count - offset, 1024)
            let bytes = try chain.readBytes(from: memory, offset: 4 * offset, count: 4 * batch)
            for index in 0..<batch {
                let pfn = UInt32(bytes[4 * index]) | UInt32(bytes[4 * index + 1]) << 8
                    | UInt32(bytes[4 * index + 2]) << 16 | UInt32(bytes[4 * index + 3]) << 24
                let address = UInt64(pfn) * VirtioBalloon.pageSize
                let view: UnsafeMutableRawBufferPointer
                do {
                    view = try memory.buffer(at: address, length: Int(VirtioBalloon.pageSize))
                } catch {
                    release()
                    throw .malformedRequest("balloon page frame 0x\(String(pfn, radix: 16)) is not guest RAM")
                }
                guard inflate, let start = view.baseAddress else { continue }
                if let current = run, current.start + current.length == start {
                    run = (current.start, current.length + view.count)
                } else {
                    release()
                    run = (start, view.count)
                }
            }
            offset += batch
        }
        release()
        let total = UInt64(count)
        state.withLock { s in
            if inflate {
                s.inflatedPages += total
                s.releasedPages += released
            } else {
                s.inflatedPages = s.inflatedPages >= total ? s.inflatedPages - total : 0
            }
        }
    }

    /// The statistics buffer: packed (u16 tag, u64 value) entries.
    private func readStatistics(_ chain: DescriptorChain, memory: GuestMemory) throws(VirtioError) {
        let entries = min(chain.readableLength / 10, VirtioBalloon.maxStatisticsEntries)
        let bytes = try chain.readBytes(from: memory, offset: 0, count: entries * 10)
        var values: [UInt16: UInt64] = [:]
        for entry in 0..<entries {
            let base = entry * 10
            let tag = UInt16(bytes[base]) | UInt16(bytes[base + 1]) << 8
            var value: UInt64 = 0
            for index in 0..<8 { value |= UInt64(bytes[base + 2 + index]) << (8 * index) }
            values[tag] = value
        }
        state.withLock { s in
            for (tag, value) in values { s.guestStatistics[tag] = value }
            s.statisticsUpdates += 1
        }
    }
}

import Memory
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// virtio-blk (type 2): one request queue over a `BlockBackend`, served on the device's worker thread.
///
/// Offers FLUSH (fsync, so a write the guest flushed survives a host crash), SEG_MAX and SIZE_MAX,
/// RO for a read-only backend, and DISCARD and WRITE_ZEROES for a writable one. GET_ID returns
/// `serial` (the `id=` of the drive) in 20 bytes.
public final class VirtioBlock: VirtioDevice, @unchecked Sendable {
    public static let sectorSize: UInt64 = 512
    public static let serialLength = 20

    /// Feature bits (virtio 1.2 §5.2.3).
    public enum Feature {
        public static let sizeMax: UInt64 = 1 << 1
        public static let segMax: UInt64 = 1 << 2
        public static let readOnly: UInt64 = 1 << 5
        public static let flush: UInt64 = 1 << 9
        public static let discard: UInt64 = 1 << 13
        public static let writeZeroes: UInt64 = 1 << 14
    }

    /// Limits advertised in config space.
    public struct Limits: Sendable, Equatable {
        /// Largest single data segment in bytes.
        public var sizeMax: UInt32 = 1 << 20
        /// Sectors per discard or write-zeroes segment (2 GiB).
        public var maxDiscardSectors: UInt32 = 1 << 22
        public var maxWriteZeroesSectors: UInt32 = 1 << 22
        /// Segments per discard or write-zeroes request.
        public var maxDiscardSegments: UInt32 = 32
        public var maxWriteZeroesSegments: UInt32 = 32
        /// Discard granularity in sectors (4 KiB: what a filesystem can really free).
        public var discardSectorAlignment: UInt32 = 8

        public init() {}
    }

    /// Counters for tests and metrics.
    public struct Statistics: Sendable, Equatable {
        public var requests: UInt64 = 0
        public var bytesRead: UInt64 = 0
        public var bytesWritten: UInt64 = 0
        public var flushes: UInt64 = 0
        public var errors: UInt64 = 0
    }

    public let backend: any BlockBackend
    public let queueSize: UInt16
    public let limits: Limits
    /// Capacity in 512-byte sectors (a trailing partial sector of the image is not exposed).
    public let capacity: UInt64
    let serial: [UInt8]
    let features: UInt64
    private let config: VirtioConfigSpace
    // Counters: one relaxed atomic add each per request, never a lock (status reads from any thread).
    let requestCount = Atomic<UInt64>(0)
    let bytesReadCount = Atomic<UInt64>(0)
    let bytesWrittenCount = Atomic<UInt64>(0)
    let flushCount = Atomic<UInt64>(0)
    let errorCount = Atomic<UInt64>(0)
    /// Set by a restore whose backend's capacity differs from the snapshot's (see VirtioBlock+Snapshot).
    let capacityChangedByRestore = Atomic<Bool>(false)
    /// iovecs for one preadv/pwritev between the backend and guest memory (worker thread only).
    let vectors: UnsafeMutableBufferPointer<iovec>
    /// Pieces moved per preadv/pwritev call; a request with more is done in several calls.
    static let vectorCapacity = 64

    /// `serial` is truncated to 20 bytes; `queueSize` must be a power of two.
    public init(backend: any BlockBackend, serial: String? = nil, queueSize: UInt16 = 256, limits: Limits = Limits()) {
        self.backend = backend
        self.queueSize = queueSize
        self.limits = limits
        capacity = backend.size / VirtioBlock.sectorSize
        self.serial = Array((serial ?? "").utf8.prefix(VirtioBlock.serialLength))
        var features = Feature.sizeMax | Feature.segMax | Feature.flush
        features |= backend.isReadOnly ? Feature.readOnly : Feature.discard | Feature.writeZeroes
        self.features = features

        var config = VirtioConfigSpace(size: 60)
        config.set(capacity, at: 0)
        config.set(limits.sizeMax, at: 8)
        // Header and status descriptors take two of the queue's slots (as QEMU computes it).
        config.set(UInt32(max(Int(queueSize) - 2, 1)), at: 12)
        config.set(UInt32(VirtioBlock.sectorSize), at: 20)
        config.set(UInt16(1), at: 34)
        config.set(limits.maxDiscardSectors, at: 36)
        config.set(limits.maxDiscardSegments, at: 40)
        config.set(limits.discardSectorAlignment, at: 44)
        config.set(limits.maxWriteZeroesSectors, at: 48)
        config.set(limits.maxWriteZeroesSegments, at: 52)
        config.set(UInt8(1), at: 56)
        self.config = config
        vectors = .allocate(capacity: VirtioBlock.vectorCapacity)
    }

    deinit { vectors.deallocate() }

    /// A snapshot of the counters.
    public var statistics: Statistics {
        var s = Statistics()
        s.requests = requestCount.load(ordering: .relaxed)
        s.bytesRead = bytesReadCount.load(ordering: .relaxed)
        s.bytesWritten = bytesWrittenCount.load(ordering: .relaxed)
        s.flushes = flushCount.load(ordering: .relaxed)
        s.errors = errorCount.load(ordering: .relaxed)
        return s
    }

    public var deviceType: VirtioDeviceType { .block }
    public var deviceFeatures: UInt64 { features }
    public var queueMaxSizes: [UInt16] { [queueSize] }

    public func readConfig(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        config.read(offset: offset, into: data)
    }

    public func processQueue(_ index: Int, activation: VirtioActivation) throws(VirtioError) {
        guard let queue = activation.queue(index) else { return }
        while let chain = try queue.popAvailable() {
            let written = try serve(chain, memory: activation.memory)
            try queue.addUsed(head: chain.head, length: UInt32(written))
        }
    }
}

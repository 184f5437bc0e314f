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

    /// The storage requests go to; replaced only by the worker thread, between requests, when a
    /// hot attach or detach (`attach(_:)`) is pending.
    public private(set) var backend: any BlockBackend
    public let queueSize: UInt16
    public let limits: Limits
    /// Capacity in 512-byte sectors (a trailing partial sector of the image is not exposed); as
    /// `backend`, changed only by the worker thread.
    public private(set) var capacity: UInt64
    /// The drive's `id=` as given (the guest reads up to 20 bytes of it with GET_ID).
    public let serialName: String
    let serial: [UInt8]
    let features: UInt64
    /// Config space: vCPU threads read it, a hot attach rewrites the capacity.
    private let config: Mutex<VirtioConfigSpace>
    /// A backend handed over by `attach(_:)`, taken by the worker before its next request.
    let pendingBackend = Mutex<(any BlockBackend)?>(nil)
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
        serialName = serial ?? ""
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
        self.config = Mutex(config)
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
        config.withLock { $0.read(offset: offset, into: data) }
    }

    /// Hot attach (and detach, with an empty backend): the guest sees the new capacity in config
    /// space at once; the worker switches to `replacement` before it serves its next request, so
    /// no request ever runs against one disk's backend with another's capacity. The caller signals
    /// the config change (the transport's `signalConfigChange`). The features negotiated at boot
    /// stay: a replacement must be writable, as the empty slot was.
    public func attach(_ replacement: any BlockBackend) throws(BlockBackendError) {
        guard replacement.isReadOnly == (features & Feature.readOnly != 0) else {
            throw BlockBackendError(refusal: "a disk attached to a slot must be as writable as the slot (its features were negotiated at boot)")
        }
        let sectors = replacement.size / VirtioBlock.sectorSize
        pendingBackend.withLock { $0 = replacement }
        config.withLock { $0.set(sectors, at: 0) }
    }

    /// The capacity the guest is told now (config space), from any thread.
    public var advertisedCapacity: UInt64 {
        config.withLock { space in
            var value: UInt64 = 0
            withUnsafeMutableBytes(of: &value) { space.read(offset: 0, into: $0) }
            return UInt64(littleEndian: value)
        }
    }

    /// Set while the slot holds a disk `attach(_:)` gave it (the control socket's detach empties only those).
    public let holdsHotAttachedDisk = Atomic<Bool>(false)

    /// Takes a pending hot attach (worker thread, between requests).
    private func takePendingBackend() {
        guard let replacement = pendingBackend.withLock({ pending -> (any BlockBackend)? in
            defer { pending = nil }
            return pending
        }) else { return }
        backend = replacement
        capacity = replacement.size / VirtioBlock.sectorSize
    }

    public func processQueue(_ index: Int, activation: VirtioActivation) throws(VirtioError) {
        guard let queue = activation.queue(index) else { return }
        takePendingBackend()
        while let chain = try queue.popAvailable() {
            let written = try serve(chain, memory: activation.memory)
            try queue.addUsed(head: chain.head, length: UInt32(written))
        }
    }
}

import Memory
import Synchronization

/// Where the driver put a split virtqueue, and how big it is (virtio 1.2 §2.7).
public struct VirtQueueLayout: Equatable, Sendable {
    public var size: UInt16
    public var descriptorTable: UInt64
    /// The driver area: flags, idx, ring[size], used_event.
    public var availableRing: UInt64
    /// The device area: flags, idx, ring[size] of (id, len), avail_event.
    public var usedRing: UInt64

    public init(size: UInt16, descriptorTable: UInt64, availableRing: UInt64, usedRing: UInt64) {
        self.size = size
        self.descriptorTable = descriptorTable
        self.availableRing = availableRing
        self.usedRing = usedRing
    }
}

/// The device side of a split virtqueue: pops validated chains, returns used buffers, decides on interrupts.
///
/// Every value read from guest memory is copied once and validated before use; a violation throws
/// `VirtioError` and the transport puts the device into NEEDS_RESET. Not thread-safe: a queue is
/// used only by its device's worker, under the transport's processing lock.
/// @unchecked Sendable: Ring indices are touched only by the owning device's worker, under the transport's engine lock (see above).
public final class VirtQueue: @unchecked Sendable {
    /// Largest indirect table accepted, in descriptors (QEMU's limit; Linux never comes close).
    public static let maxIndirectDescriptors = 1024

    static let flagNext: UInt16 = 1, flagWrite: UInt16 = 2, flagIndirect: UInt16 = 4
    static let availNoInterrupt: UInt16 = 1

    public let index: Int
    public let layout: VirtQueueLayout
    public var size: UInt16 { layout.size }
    let memory: GuestMemory
    let eventIndex: Bool
    let indirect: Bool

    /// The next avail ring slot to consume (last_avail_idx) and the next used slot to fill.
    public private(set) var nextAvailable: UInt16 = 0
    public private(set) var nextUsed: UInt16 = 0
    /// Used idx when the driver was last considered for an interrupt (EVENT_IDX bookkeeping).
    var signalledUsed: UInt16 = 0

    /// Sets the ring positions (snapshot restore only).
    func setPositions(available: UInt16, used: UInt16, signalled: UInt16) {
        nextAvailable = available
        nextUsed = used
        signalledUsed = signalled
    }
    private var usedSinceCheck = false

    /// Validates the layout against guest RAM; `features` are the negotiated ones.
    public init(index: Int, layout: VirtQueueLayout, memory: GuestMemory, features: UInt64) throws(VirtioError) {
        let size = UInt64(layout.size)
        guard size > 0, size <= 32768, size & (size - 1) == 0 else {
            throw .queueLayout(queue: index, "size \(size) is not a power of two up to 32768")
        }
        let areas: [(String, UInt64, UInt64, UInt64)] = [
            ("descriptor table", layout.descriptorTable, 16 * size, 16),
            ("available ring", layout.availableRing, 6 + 2 * size, 2),
            ("used ring", layout.usedRing, 6 + 8 * size, 4),
        ]
        for (name, address, length, alignment) in areas {
            guard address % alignment == 0, memory.isRAM(address, length: length) else {
                throw .queueLayout(queue: index, "\(name) at 0x\(String(address, radix: 16)) is misaligned or not guest RAM")
            }
        }
        self.index = index
        self.layout = layout
        self.memory = memory
        eventIndex = features & VirtioFeature.eventIndex != 0
        indirect = features & VirtioFeature.indirectDescriptors != 0
    }

    // MARK: guest memory, typed and error-mapped

    @inline(__always)
    private func load<T: FixedWidthInteger>(_: T.Type, _ address: UInt64) throws(VirtioError) -> T {
        do { return try memory.read(T.self, at: address) } catch { throw .memory(error) }
    }

    @inline(__always)
    private func store<T: FixedWidthInteger>(_ value: T, _ address: UInt64) throws(VirtioError) {
        do { try memory.write(value, at: address) } catch { throw .memory(error) }
    }

    private var usedEventAddress: UInt64 { layout.availableRing + 4 + 2 * UInt64(size) }
    private var availEventAddress: UInt64 { layout.usedRing + 4 + 8 * UInt64(size) }

    // MARK: available ring

    /// Number of buffers the driver has made available and the device has not popped yet.
    public func pendingCount() throws(VirtioError) -> Int {
        let available: UInt16 = try load(UInt16.self, layout.availableRing + 2)
        let pending = available &- nextAvailable
        guard pending <= size else {
            throw .availableIndexJump(queue: index, available: available, next: nextAvailable, size: size)
        }
        return Int(pending)
    }

    /// The next available buffer, validated, or nil when the ring is empty.
    public func popAvailable() throws(VirtioError) -> DescriptorChain? {
        var pending = try pendingCount()
        if pending == 0 {
            guard eventIndex else { return nil }
            // Ask for a kick at the next buffer, then look again: one may have landed before the write.
            try store(nextAvailable, availEventAddress)
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            pending = try pendingCount()
            if pending == 0 { return nil }
        }
        // The ring entry must be read after the idx that published it.
        atomicMemoryFence(ordering: .acquiring)
        let slot = layout.availableRing + 4 + 2 * UInt64(nextAvailable % size)
        let head: UInt16 = try load(UInt16.self, slot)
        guard head < size else { throw .headOutOfRange(queue: index, head: head, size: size) }
        let chain = try walk(head: head)
        nextAvailable &+= 1
        return chain
    }

    /// The chain at `head` again, validated as when it was popped: a descriptor chain a device held
    /// at snapshot time (the head comes from the snapshot file, so it is checked like a ring entry).
    public func heldChain(head: UInt16) throws(VirtioError) -> DescriptorChain {
        guard head < size else { throw .headOutOfRange(queue: index, head: head, size: size) }
        return try walk(head: head)
    }

    /// Follows the chain from `head`, validating each descriptor as it is copied out; the chain
    /// records only where it starts and its lengths (devices walk it again, lazily).
    private func walk(head: UInt16) throws(VirtioError) -> DescriptorChain {
        let start = DescriptorChain(head: head, readableLength: 0, writableLength: 0, table: layout.descriptorTable,
                                    tableSize: Int(size), indirectAllowed: indirect, queue: index)
        var walker = ChainWalker(memory: memory, chain: start)
        let (readable, writable) = try walker.validate()
        return DescriptorChain(head: head, readableLength: readable, writableLength: writable, table: layout.descriptorTable,
                               tableSize: Int(size), indirectAllowed: indirect, queue: index)
    }

    // MARK: used ring

    /// Returns `head` to the driver with `length` bytes written into its writable part.
    public func addUsed(head: UInt16, length: UInt32) throws(VirtioError) {
        guard head < size else { throw .usedHeadOutOfRange(queue: index, head: head) }
        let slot = layout.usedRing + 4 + 8 * UInt64(nextUsed % size)
        try store(UInt32(head), slot)
        try store(length, slot + 4)
        // The element must be visible before the idx that publishes it.
        atomicMemoryFence(ordering: .releasing)
        nextUsed &+= 1
        try store(nextUsed, layout.usedRing + 2)
        usedSinceCheck = true
    }

    /// True when buffers were used since the last call and the driver wants an interrupt for them
    /// (used_event with EVENT_IDX, otherwise VRING_AVAIL_F_NO_INTERRUPT).
    public func needsNotification() throws(VirtioError) -> Bool {
        guard usedSinceCheck else { return false }
        usedSinceCheck = false
        // The used idx store must be globally visible before the driver's suppression field is read.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if eventIndex {
            let usedEvent: UInt16 = try load(UInt16.self, usedEventAddress)
            let previous = signalledUsed
            signalledUsed = nextUsed
            // vring_need_event: did used idx step past used_event since the last check?
            return nextUsed &- usedEvent &- 1 < nextUsed &- previous
        }
        let flags: UInt16 = try load(UInt16.self, layout.availableRing)
        return flags & VirtQueue.availNoInterrupt == 0
    }
}

import Memory
#if canImport(Glibc)
import Glibc
#endif

/// A piece of a buffer that lies wholly inside one guest RAM region.
public struct GuestSegment: Equatable, Sendable {
    public let address: UInt64
    public let length: Int

    public init(address: UInt64, length: Int) {
        self.address = address
        self.length = length
    }
}

/// One available buffer, validated when popped: every descriptor is guest RAM, readable ones came
/// before writable ones, the walk ends within its table.
///
/// The chain stores no segment list (no allocation per request): its pieces are produced lazily by
/// `ChainWalker`, which copies each descriptor out of guest memory once per walk and checks it
/// again as it goes, so a guest that rewrites descriptors it has handed over gets a device error
/// (or its own buffers garbled), never an access outside guest RAM. Zero-length descriptors yield
/// nothing; a descriptor crossing from one RAM region into an adjacent one yields one piece per region.
public struct DescriptorChain: Sendable {
    /// The head index to hand back in `VirtQueue.addUsed`.
    public let head: UInt16
    /// Bytes in the device-readable and device-writable parts, as validated at pop time.
    public let readableLength: Int
    public let writableLength: Int
    /// The ring's descriptor table and its size; the walk starts at `head`.
    let table: UInt64
    let tableSize: Int
    /// VIRTIO_F_INDIRECT_DESC was negotiated.
    let indirectAllowed: Bool
    let queue: Int

    /// A walker over the chain's descriptors, from the first.
    func walker(_ memory: GuestMemory) -> ChainWalker {
        ChainWalker(memory: memory, chain: self)
    }

    /// Calls `body` with the host view of each piece of bytes `[offset, offset+length)` of the
    /// readable (`writable` false) or writable part, clipped to what the chain holds; returns the bytes covered.
    @discardableResult
    @inline(__always)
    public func forEachPiece(writable: Bool, from offset: Int, length: Int, memory: GuestMemory,
                             _ body: (UnsafeMutableRawBufferPointer) throws(VirtioError) -> Void) throws(VirtioError) -> Int {
        var walker = walker(memory)
        var skip = max(offset, 0), left = max(length, 0), covered = 0
        while left > 0, let piece = try walker.next() {
            guard piece.writable == writable else {
                if writable { continue } else { break }  // readable pieces all come first
            }
            if skip >= piece.view.count { skip -= piece.view.count; continue }
            let take = min(piece.view.count - skip, left)
            try body(UnsafeMutableRawBufferPointer(start: piece.view.baseAddress! + skip, count: take))
            covered += take
            left -= take
            skip = 0
        }
        return covered
    }

    /// The guest segments of the readable or writable part (allocates: for tests and slow paths).
    public func segments(writable: Bool, memory: GuestMemory) throws(VirtioError) -> [GuestSegment] {
        var result: [GuestSegment] = []
        var walker = walker(memory)
        while let piece = try walker.next() {
            guard piece.writable == writable else { continue }
            result.append(GuestSegment(address: piece.address, length: piece.view.count))
        }
        return result
    }

    /// Copies readable bytes starting at `offset` into `destination`; returns how many were copied.
    @discardableResult
    public func read(from memory: GuestMemory, offset: Int, into destination: UnsafeMutableRawBufferPointer) throws(VirtioError) -> Int {
        guard let base = destination.baseAddress else { return 0 }
        var copied = 0
        try forEachPiece(writable: false, from: offset, length: destination.count, memory: memory) { piece in
            memcpy(base + copied, piece.baseAddress!, piece.count)
            copied += piece.count
        }
        return copied
    }

    /// Copies `bytes` into the writable part starting at `offset`; returns how many fitted.
    @discardableResult
    public func write(to memory: GuestMemory, offset: Int, from bytes: UnsafeRawBufferPointer) throws(VirtioError) -> Int {
        guard let base = bytes.baseAddress else { return 0 }
        var copied = 0
        try forEachPiece(writable: true, from: offset, length: bytes.count, memory: memory) { piece in
            memcpy(piece.baseAddress!, base + copied, piece.count)
            copied += piece.count
        }
        return copied
    }

    /// Fills `vectors` with the pieces of bytes `[offset, offset+length)` of one part, stopping when
    /// `vectors` is full; returns the entries used and the bytes they cover (less than `length` when
    /// the chain is shorter or has more pieces than `vectors` holds).
    public func gather(writable: Bool, from offset: Int, length: Int, memory: GuestMemory,
                       into vectors: UnsafeMutableBufferPointer<iovec>) throws(VirtioError) -> (count: Int, bytes: Int) {
        var walker = walker(memory)
        var skip = max(offset, 0), left = max(length, 0), count = 0, bytes = 0
        while left > 0, count < vectors.count, let piece = try walker.next() {
            guard piece.writable == writable else {
                if writable { continue } else { break }
            }
            if skip >= piece.view.count { skip -= piece.view.count; continue }
            let take = min(piece.view.count - skip, left)
            vectors[count] = iovec(iov_base: piece.view.baseAddress! + skip, iov_len: take)
            count += 1
            bytes += take
            left -= take
            skip = 0
        }
        return (count, bytes)
    }
}

extension DescriptorChain {
    /// `count` readable bytes starting at `offset` (fewer only past `readableLength`), copied out
    /// (allocates: not for hot paths). Always as many as the validated length promises: bytes a
    /// guest took away by rewriting the chain after handing it over read as zero, so callers may
    /// index what they asked for.
    public func readBytes(from memory: GuestMemory, offset: Int, count: Int) throws(VirtioError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: max(min(count, readableLength - max(offset, 0)), 0))
        var failure: VirtioError?
        bytes.withUnsafeMutableBytes { buffer in
            do throws(VirtioError) { _ = try read(from: memory, offset: offset, into: buffer) } catch { failure = error }
        }
        if let failure { throw failure }
        return bytes
    }

    /// Copies `bytes` into the writable part starting at `offset`; returns how many fitted.
    @discardableResult
    public func writeBytes(_ bytes: [UInt8], to memory: GuestMemory, offset: Int) throws(VirtioError) -> Int {
        var failure: VirtioError?
        let copied = bytes.withUnsafeBytes { raw -> Int in
            do throws(VirtioError) { return try write(to: memory, offset: offset, from: raw) } catch { failure = error; return 0 }
        }
        if let failure { throw failure }
        return copied
    }
}

/// One piece of a chain: a host view of guest memory inside one RAM region.
public struct ChainPiece {
    public let address: UInt64
    public let view: UnsafeMutableRawBufferPointer
    public let writable: Bool
}

/// Walks a chain's descriptors lazily, checking each one as it is copied out of guest memory: no
/// more descriptors than the table holds, an indirect table only where negotiated, never nested and
/// never with NEXT, no readable descriptor after a writable one, `next` inside the table, every
/// byte guest RAM. `VirtQueue` validates a whole chain with it at pop time; devices walk it again.
public struct ChainWalker {
    private let memory: GuestMemory
    private let indirectAllowed: Bool
    private let queue: Int
    private var table: UInt64
    private var tableSize: Int
    private var position: Int
    private var visited = 0
    private var inIndirect = false
    private var finished = false
    private var sawWritable = false
    // What is left of the current descriptor (it may span adjacent regions).
    private var address: UInt64 = 0
    private var left: UInt64 = 0
    private var writable = false

    init(memory: GuestMemory, chain: DescriptorChain) {
        self.memory = memory
        indirectAllowed = chain.indirectAllowed
        queue = chain.queue
        table = chain.table
        tableSize = chain.tableSize
        position = Int(chain.head)
    }

    /// The next piece, or nil at the end of the chain.
    public mutating func next() throws(VirtioError) -> ChainPiece? {
        while left == 0 {
            guard !finished else { return nil }
            try fetch()
        }
        guard let region = memory.regions.first(where: { $0.guestBase <= address && address < $0.guestEnd }) else {
            throw .descriptorOutsideRAM(queue: queue, address: address, length: UInt32(truncatingIfNeeded: left))
        }
        let take = min(left, region.guestEnd - address)
        let piece = ChainPiece(address: address,
                               view: UnsafeMutableRawBufferPointer(start: region.host + Int(address - region.guestBase), count: Int(take)),
                               writable: writable)
        address += take
        left -= take
        return piece
    }

    /// Walks the whole chain without producing pieces; returns its readable and writable byte counts.
    mutating func validate() throws(VirtioError) -> (readable: Int, writable: Int) {
        var readable: UInt64 = 0, writable: UInt64 = 0
        while !finished {
            try fetch()
            if self.writable { writable += left } else { readable += left }
            guard readable <= UInt64(UInt32.max), writable <= UInt64(UInt32.max) else { throw .chainTooLarge(queue: queue) }
            left = 0
        }
        return (Int(readable), Int(writable))
    }

    /// Copies the next descriptor out once, checks it, and makes it current (following an
    /// indirect descriptor into its table).
    private mutating func fetch() throws(VirtioError) {
        while true {
            visited += 1
            guard visited <= tableSize else { throw .chainTooLong(queue: queue, limit: tableSize) }
            let descriptor = try DescriptorTable.load(memory, table: table, index: position, queue: queue)
            if descriptor.flags & VirtQueue.flagIndirect != 0 {
                guard indirectAllowed else { throw .indirectNotNegotiated(queue: queue) }
                guard !inIndirect else { throw .nestedIndirect(queue: queue) }
                guard descriptor.flags & VirtQueue.flagNext == 0 else { throw .indirectWithNext(queue: queue) }
                let count = Int(descriptor.length / 16)
                guard descriptor.length % 16 == 0, count > 0, count <= VirtQueue.maxIndirectDescriptors,
                      memory.isRAM(descriptor.address, length: UInt64(descriptor.length)) else {
                    throw .indirectTable(queue: queue, address: descriptor.address, length: descriptor.length)
                }
                table = descriptor.address
                tableSize = count
                position = 0
                visited = 0
                inIndirect = true
                continue
            }
            let isWritable = descriptor.flags & VirtQueue.flagWrite != 0
            if isWritable {
                sawWritable = true
            } else if sawWritable {
                throw .readableAfterWritable(queue: queue)
            }
            if descriptor.length > 0 {
                guard memory.coversRAM(address: descriptor.address, length: UInt64(descriptor.length)) else {
                    throw .descriptorOutsideRAM(queue: queue, address: descriptor.address, length: descriptor.length)
                }
            }
            address = descriptor.address
            left = UInt64(descriptor.length)
            writable = isWritable
            if descriptor.flags & VirtQueue.flagNext == 0 {
                finished = true
            } else {
                guard Int(descriptor.next) < tableSize else {
                    throw .nextOutOfRange(queue: queue, next: descriptor.next, tableSize: tableSize)
                }
                position = Int(descriptor.next)
            }
            return
        }
    }
}

/// One split-ring descriptor, as copied out of guest memory.
struct Descriptor {
    let address: UInt64
    let length: UInt32
    let flags: UInt16
    let next: UInt16
}

enum DescriptorTable {
    /// One copy of the whole 16-byte descriptor: the guest may rewrite it while we look.
    @inline(__always)
    static func load(_ memory: GuestMemory, table: UInt64, index: Int, queue: Int) throws(VirtioError) -> Descriptor {
        let view: UnsafeMutableRawBufferPointer
        do { view = try memory.buffer(at: table &+ 16 &* UInt64(index), length: 16) } catch { throw .memory(error) }
        let low = UInt64(littleEndian: view.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        let high = UInt64(littleEndian: view.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        return Descriptor(address: low, length: UInt32(truncatingIfNeeded: high),
                          flags: UInt16(truncatingIfNeeded: high >> 32), next: UInt16(truncatingIfNeeded: high >> 48))
    }
}

extension GuestMemory {
    /// True when every byte of `[address, address+length)` is RAM (possibly across adjacent regions).
    func coversRAM(address: UInt64, length: UInt64) -> Bool {
        guard address.addingReportingOverflow(length).overflow == false else { return false }
        var cursor = address, left = length
        while left > 0 {
            guard let region = regions.first(where: { $0.guestBase <= cursor && cursor < $0.guestEnd }) else { return false }
            let take = min(left, region.guestEnd - cursor)
            cursor += take
            left -= take
        }
        return true
    }
}

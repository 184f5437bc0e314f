import Memory
#if canImport(Glibc)
import Glibc
#endif

/// Request decoding and execution for VirtioBlock (virtio 1.2 §5.2.6).
extension VirtioBlock {
    /// Request types.
    enum RequestType: UInt32 {
        case read = 0, write = 1, flush = 4, getID = 8, discard = 11, writeZeroes = 13
    }

    /// The status byte the device writes last.
    enum Status: UInt8 {
        case ok = 0, ioError = 1, unsupported = 2
    }

    static let headerSize = 16
    static let rangeSize = 16
    static let unmapFlag: UInt32 = 1

    /// Executes one request; returns the bytes written into its device-writable part (status included).
    ///
    /// A request with no room for the header or the status byte cannot even be failed politely: that
    /// is a driver bug and puts the device into NEEDS_RESET (QEMU does the same).
    func serve(_ chain: DescriptorChain, memory: GuestMemory) throws(VirtioError) -> Int {
        guard chain.readableLength >= VirtioBlock.headerSize, chain.writableLength >= 1 else {
            throw .malformedRequest("virtio-blk request without a 16-byte header or a status byte")
        }
        // type (u32), reserved (u32), sector (u64): copied out once, onto the stack.
        var header: (UInt64, UInt64) = (0, 0)
        try withUnsafeMutableBytes(of: &header) { (raw) throws(VirtioError) in
            _ = try chain.read(from: memory, offset: 0, into: raw)
        }
        let type = UInt32(truncatingIfNeeded: UInt64(littleEndian: header.0))
        let sector = UInt64(littleEndian: header.1)

        let (status, dataWritten) = try execute(type: type, sector: sector, chain: chain, memory: memory)
        var statusByte = status.rawValue
        try withUnsafeBytes(of: &statusByte) { (raw) throws(VirtioError) in
            _ = try chain.write(to: memory, offset: chain.writableLength - 1, from: raw)
        }
        requestCount.wrappingAdd(1, ordering: .relaxed)
        if status != .ok { errorCount.wrappingAdd(1, ordering: .relaxed) }
        return dataWritten + 1
    }

    private func execute(type: UInt32, sector: UInt64, chain: DescriptorChain,
                         memory: GuestMemory) throws(VirtioError) -> (Status, Int) {
        switch RequestType(rawValue: type) {
        case .read:
            let length = chain.writableLength - 1
            guard inRange(sector: sector, bytes: UInt64(length)) else { return (.ioError, 0) }
            let done = try transfer(toGuest: true, chain: chain, from: 0, length: length,
                                    diskOffset: sector * VirtioBlock.sectorSize, memory: memory)
            guard done == length else { return (.ioError, done) }
            bytesReadCount.wrappingAdd(UInt64(done), ordering: .relaxed)
            return (.ok, done)

        case .write:
            guard !backend.isReadOnly else { return (.ioError, 0) }
            let length = chain.readableLength - VirtioBlock.headerSize
            guard inRange(sector: sector, bytes: UInt64(length)) else { return (.ioError, 0) }
            let done = try transfer(toGuest: false, chain: chain, from: VirtioBlock.headerSize, length: length,
                                    diskOffset: sector * VirtioBlock.sectorSize, memory: memory)
            guard done == length else { return (.ioError, 0) }
            bytesWrittenCount.wrappingAdd(UInt64(done), ordering: .relaxed)
            return (.ok, 0)

        case .flush:
            do { try backend.flush() } catch { return (.ioError, 0) }
            flushCount.wrappingAdd(1, ordering: .relaxed)
            return (.ok, 0)

        case .getID:
            let room = min(chain.writableLength - 1, VirtioBlock.serialLength)
            let id = serial + [UInt8](repeating: 0, count: VirtioBlock.serialLength - serial.count)
            return (.ok, try chain.writeBytes(Array(id[0..<room]), to: memory, offset: 0))

        case .discard, .writeZeroes:
            let zeroes = type == RequestType.writeZeroes.rawValue
            // Both change the disk: a read-only one fails them like any write (they are not offered either).
            guard !backend.isReadOnly else { return (.ioError, 0) }
            guard features & (zeroes ? Feature.writeZeroes : Feature.discard) != 0 else { return (.unsupported, 0) }
            return (try eraseRanges(zeroes: zeroes, chain: chain, memory: memory), 0)

        case nil:
            return (.unsupported, 0)
        }
    }

    /// Discard or write-zeroes: a list of (sector, count, flags) ranges after the header.
    private func eraseRanges(zeroes: Bool, chain: DescriptorChain, memory: GuestMemory) throws(VirtioError) -> Status {
        let payload = chain.readableLength - VirtioBlock.headerSize
        let maxSegments = Int(zeroes ? limits.maxWriteZeroesSegments : limits.maxDiscardSegments)
        let maxSectors = zeroes ? limits.maxWriteZeroesSectors : limits.maxDiscardSectors
        guard payload > 0, payload % VirtioBlock.rangeSize == 0, payload / VirtioBlock.rangeSize <= maxSegments else {
            return .ioError
        }
        let bytes = try chain.readBytes(from: memory, offset: VirtioBlock.headerSize, count: payload)
        // Validate every range before touching the disk, so a bad one leaves the others undone too.
        var ranges: [(offset: UInt64, length: UInt64, unmap: Bool)] = []
        for index in 0..<(payload / VirtioBlock.rangeSize) {
            let base = index * VirtioBlock.rangeSize
            let sector = bytes.littleEndianValue(UInt64.self, at: base)
            let count = bytes.littleEndianValue(UInt32.self, at: base + 8)
            let flags = bytes.littleEndianValue(UInt32.self, at: base + 12)
            // Unknown flags, or unmap on a discard, are UNSUPP (§5.2.6.2).
            guard flags & ~(zeroes ? VirtioBlock.unmapFlag : 0) == 0 else { return .unsupported }
            guard count <= maxSectors, inRange(sector: sector, bytes: UInt64(count) * VirtioBlock.sectorSize) else {
                return .ioError
            }
            ranges.append((sector * VirtioBlock.sectorSize, UInt64(count) * VirtioBlock.sectorSize, flags & VirtioBlock.unmapFlag != 0))
        }
        for range in ranges where range.length > 0 {
            do {
                if zeroes {
                    try backend.writeZeroes(at: range.offset, length: range.length, mayUnmap: range.unmap)
                } else {
                    try backend.discard(at: range.offset, length: range.length)
                }
            } catch {
                return .ioError
            }
        }
        return .ok
    }

    /// Moves `length` bytes of the chain's data, from byte `offset` of its writable part (a read,
    /// `toGuest`) or readable part (a write), between guest memory and the disk at `diskOffset`:
    /// preadv/pwritev straight into or out of guest RAM, `vectorCapacity` pieces per call.
    /// Returns the bytes moved before the backend failed (`length` when it did not).
    private func transfer(toGuest: Bool, chain: DescriptorChain, from offset: Int, length: Int,
                          diskOffset: UInt64, memory: GuestMemory) throws(VirtioError) -> Int {
        let vectors = self.vectors, backend = self.backend
        var count = 0, pending = 0, done = 0, failed = false
        func submit() {
            guard count > 0, !failed else { return }
            let batch = UnsafeMutableBufferPointer(rebasing: vectors[0..<count])
            do {
                if toGuest {
                    try backend.readVectors(batch, at: diskOffset + UInt64(done))
                } else {
                    try backend.writeVectors(batch, at: diskOffset + UInt64(done))
                }
                done += pending
            } catch {
                failed = true
            }
            count = 0
            pending = 0
        }
        try chain.forEachPiece(writable: toGuest, from: offset, length: length, memory: memory) { piece in
            vectors[count] = iovec(iov_base: piece.baseAddress, iov_len: piece.count)
            count += 1
            pending += piece.count
            if count == vectors.count { submit() }
        }
        submit()
        return done
    }

    /// True when `bytes` is whole sectors and `[sector, sector + bytes/512)` lies on the disk.
    func inRange(sector: UInt64, bytes: UInt64) -> Bool {
        guard bytes % VirtioBlock.sectorSize == 0, sector <= capacity else { return false }
        return bytes / VirtioBlock.sectorSize <= capacity - sector
    }
}

extension [UInt8] {
    /// The little-endian integer at `offset` (the caller checked the bounds).
    func littleEndianValue<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var value: T = 0
        for index in 0..<MemoryLayout<T>.size { value |= T(self[offset + index]) << (8 * index) }
        return value
    }
}

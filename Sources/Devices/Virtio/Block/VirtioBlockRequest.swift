import Memory

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
        let header = try chain.readBytes(from: memory, offset: 0, count: VirtioBlock.headerSize)
        let type = header.littleEndianValue(UInt32.self, at: 0)
        let sector = header.littleEndianValue(UInt64.self, at: 8)

        let (status, dataWritten) = try execute(type: type, sector: sector, chain: chain, memory: memory)
        try chain.writeBytes([status.rawValue], to: memory, offset: chain.writableLength - 1)
        counters.withLock { stats in
            stats.requests += 1
            if status != .ok { stats.errors += 1 }
        }
        return dataWritten + 1
    }

    private func execute(type: UInt32, sector: UInt64, chain: DescriptorChain,
                         memory: GuestMemory) throws(VirtioError) -> (Status, Int) {
        switch RequestType(rawValue: type) {
        case .read:
            let length = chain.writableLength - 1
            guard inRange(sector: sector, bytes: UInt64(length)) else { return (.ioError, 0) }
            var done = 0
            for segment in DescriptorChain.slice(chain.writable, from: 0, length: length) {
                let view = try memory.view(segment)
                do {
                    try backend.read(into: view, at: sector * VirtioBlock.sectorSize + UInt64(done))
                } catch {
                    return (.ioError, done)
                }
                done += segment.length
            }
            counters.withLock { $0.bytesRead += UInt64(done) }
            return (.ok, done)

        case .write:
            guard !backend.isReadOnly else { return (.ioError, 0) }
            let length = chain.readableLength - VirtioBlock.headerSize
            guard inRange(sector: sector, bytes: UInt64(length)) else { return (.ioError, 0) }
            var done = 0
            for segment in DescriptorChain.slice(chain.readable, from: VirtioBlock.headerSize, length: length) {
                let view = try memory.view(segment)
                do {
                    try backend.write(from: UnsafeRawBufferPointer(view), at: sector * VirtioBlock.sectorSize + UInt64(done))
                } catch {
                    return (.ioError, 0)
                }
                done += segment.length
            }
            counters.withLock { $0.bytesWritten += UInt64(done) }
            return (.ok, 0)

        case .flush:
            do { try backend.flush() } catch { return (.ioError, 0) }
            counters.withLock { $0.flushes += 1 }
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

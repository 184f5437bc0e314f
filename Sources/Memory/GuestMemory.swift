#if canImport(Glibc)
import Glibc
#endif

/// An error from a guest-memory access: the guest-physical range that was not RAM.
public enum GuestMemoryError: Error, Equatable, CustomStringConvertible {
    case outOfRange(address: UInt64, length: UInt64)
    case mapFailed(size: UInt64, errno: Int32)
    case invalidLayout(String)

    public var description: String {
        switch self {
        case let .outOfRange(address, length):
            return "guest-physical range 0x\(String(address, radix: 16))+0x\(String(length, radix: 16)) is not guest RAM"
        case let .mapFailed(size, errno):
            return "mmap of \(size) bytes of guest RAM failed: \(String(cString: strerror(errno)))"
        case let .invalidLayout(why):
            return "invalid guest memory layout: \(why)"
        }
    }
}

/// One contiguous piece of guest RAM: guest-physical base, size and the host mapping behind it.
public struct GuestMemoryRegion: Sendable {
    public let guestBase: UInt64
    public let size: UInt64
    /// Host address of the first byte; valid for the lifetime of the owning GuestMemory.
    public nonisolated(unsafe) let host: UnsafeMutableRawPointer

    public var guestEnd: UInt64 { guestBase + size }

    public init(guestBase: UInt64, size: UInt64, host: UnsafeMutableRawPointer) {
        self.guestBase = guestBase
        self.size = size
        self.host = host
    }

    public func contains(_ address: UInt64, length: UInt64) -> Bool {
        address >= guestBase && length <= size && address - guestBase <= size - length
    }
}

/// Guest RAM: mmap-backed regions; the only place raw pointers into guest memory live.
///
/// Every access is bounds-checked and a range that is not wholly inside one region is an error,
/// never a host read or write. Accesses are plain loads/stores: the guest may change memory
/// concurrently, so callers copy values out before validating them (no double fetch).
public final class GuestMemory: Sendable {
    public let regions: [GuestMemoryRegion]
    private let ownsMappings: Bool

    /// Maps `regions` (guest base, size) as anonymous private memory with MAP_NORESERVE.
    public init(layout: [(base: UInt64, size: UInt64)]) throws(GuestMemoryError) {
        var mapped: [GuestMemoryRegion] = []
        let sorted = layout.sorted { $0.base < $1.base }
        var previousEnd: UInt64 = 0
        for (index, piece) in sorted.enumerated() {
            guard piece.size > 0, piece.size % 4096 == 0, piece.base % 4096 == 0 else {
                GuestMemory.unmap(mapped)
                throw .invalidLayout("region \(index) is empty or not page-aligned")
            }
            guard piece.base >= previousEnd, piece.base.addingReportingOverflow(piece.size).overflow == false else {
                GuestMemory.unmap(mapped)
                throw .invalidLayout("regions overlap or overflow")
            }
            previousEnd = piece.base + piece.size
            let pointer = mmap(nil, Int(piece.size), PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
            guard let pointer, pointer != MAP_FAILED else {
                let error = errno
                GuestMemory.unmap(mapped)
                throw .mapFailed(size: piece.size, errno: error)
            }
            mapped.append(GuestMemoryRegion(guestBase: piece.base, size: piece.size, host: pointer))
        }
        regions = mapped
        ownsMappings = true
    }

    /// Wraps mappings owned elsewhere (e.g. a snapshot file mapping); they are not unmapped here.
    public init(borrowing regions: [GuestMemoryRegion]) {
        self.regions = regions.sorted { $0.guestBase < $1.guestBase }
        ownsMappings = false
    }

    deinit {
        if ownsMappings { GuestMemory.unmap(regions) }
    }

    private static func unmap(_ regions: [GuestMemoryRegion]) {
        for region in regions { munmap(region.host, Int(region.size)) }
    }

    /// Total bytes of guest RAM.
    public var totalSize: UInt64 { regions.reduce(0) { $0 + $1.size } }

    /// True when `[address, address+length)` lies inside one RAM region.
    public func isRAM(_ address: UInt64, length: UInt64 = 1) -> Bool {
        region(containing: address, length: length) != nil
    }

    @inline(__always)
    private func region(containing address: UInt64, length: UInt64) -> GuestMemoryRegion? {
        for region in regions where region.contains(address, length: length) { return region }
        return nil
    }

    /// A host view of `[address, address+length)`; valid while this GuestMemory lives.
    public func buffer(at address: UInt64, length: Int) throws(GuestMemoryError) -> UnsafeMutableRawBufferPointer {
        guard length >= 0, let region = region(containing: address, length: UInt64(length)) else {
            throw .outOfRange(address: address, length: UInt64(max(length, 0)))
        }
        return UnsafeMutableRawBufferPointer(start: region.host + Int(address - region.guestBase), count: length)
    }

    /// Reads a little-endian integer at a guest-physical address.
    @inline(__always)
    public func read<T: FixedWidthInteger>(_: T.Type = T.self, at address: UInt64) throws(GuestMemoryError) -> T {
        let view = try buffer(at: address, length: MemoryLayout<T>.size)
        return T(littleEndian: view.loadUnaligned(as: T.self))
    }

    /// Writes a little-endian integer at a guest-physical address.
    @inline(__always)
    public func write<T: FixedWidthInteger>(_ value: T, at address: UInt64) throws(GuestMemoryError) {
        let view = try buffer(at: address, length: MemoryLayout<T>.size)
        view.storeBytes(of: value.littleEndian, as: T.self)
    }

    /// Copies `count` bytes out of guest memory.
    public func readBytes(at address: UInt64, count: Int) throws(GuestMemoryError) -> [UInt8] {
        let view = try buffer(at: address, length: count)
        return Array(view)
    }

    /// Copies guest memory into `destination`.
    public func read(into destination: UnsafeMutableRawBufferPointer, at address: UInt64) throws(GuestMemoryError) {
        let view = try buffer(at: address, length: destination.count)
        if let base = destination.baseAddress, let source = view.baseAddress {
            memmove(base, source, destination.count)
        }
    }

    /// Copies `bytes` into guest memory.
    public func write(_ bytes: UnsafeRawBufferPointer, at address: UInt64) throws(GuestMemoryError) {
        let view = try buffer(at: address, length: bytes.count)
        if let base = bytes.baseAddress, let destination = view.baseAddress {
            memmove(destination, base, bytes.count)
        }
    }

    /// Copies an array of bytes into guest memory.
    public func write(_ bytes: [UInt8], at address: UInt64) throws(GuestMemoryError) {
        let view = try buffer(at: address, length: bytes.count)
        bytes.withUnsafeBytes { raw in
            if let source = raw.baseAddress, let destination = view.baseAddress { memmove(destination, source, raw.count) }
        }
    }

    /// Fills a guest range with zeroes. In memory this object mapped (anonymous and private), whole
    /// pages are given back instead (MADV_DONTNEED: they read as zero and cost no host memory until
    /// touched), so a kernel's bss does not become resident before the guest uses it.
    public func zero(at address: UInt64, count: Int) throws(GuestMemoryError) {
        let view = try buffer(at: address, length: count)
        guard let base = view.baseAddress else { return }
        let pageSize = 4096
        let start = Int(bitPattern: base), end = start + count
        let firstPage = (start + pageSize - 1) & ~(pageSize - 1), lastPage = end & ~(pageSize - 1)
        guard ownsMappings, firstPage < lastPage,
              madvise(UnsafeMutableRawPointer(bitPattern: firstPage), lastPage - firstPage, MADV_DONTNEED) == 0 else {
            memset(base, 0, count)
            return
        }
        memset(base, 0, firstPage - start)
        memset(UnsafeMutableRawPointer(bitPattern: lastPage)!, 0, end - lastPage)
    }
}

extension GuestMemory {
    /// Bytes of guest RAM currently resident in host memory (mincore), for overhead accounting.
    public func residentBytes() -> UInt64 {
        let pageSize = UInt64(sysconf(Int32(_SC_PAGESIZE)))
        var total: UInt64 = 0
        for region in regions {
            let pages = Int((region.size + pageSize - 1) / pageSize)
            var vector = [UInt8](repeating: 0, count: pages)
            guard mincore(region.host, Int(region.size), &vector) == 0 else { continue }
            total += UInt64(vector.reduce(0) { $0 + Int($1 & 1) }) * pageSize
        }
        return total
    }
}

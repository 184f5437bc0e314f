import Synchronization

/// Why a device could not be placed on a bus.
public enum BusError: Error, Equatable, CustomStringConvertible {
    case overlap(name: String, with: String)
    case emptyOrOverflowing(name: String)
    case frozen

    public var description: String {
        switch self {
        case let .overlap(name, other): return "device \(name) overlaps device \(other) on the bus"
        case let .emptyOrOverflowing(name): return "device \(name) has an empty or overflowing address range"
        case .frozen: return "the bus is frozen once vCPUs run"
        }
    }
}

/// An address map (port I/O or MMIO) from ranges to devices.
///
/// Built before vCPUs start, then frozen: lookups are a lock-free binary search over a sorted,
/// immutable array. Accesses that hit no device read as all-ones and are counted.
/// @unchecked Sendable: `entries` and `isFrozen` change only while the machine is built, on one thread, before `freeze()` and before any vCPU thread starts (thread creation orders those writes before every lookup); afterwards they are only read.
public final class Bus: @unchecked Sendable {
    /// One registered range.
    public struct Entry: Sendable {
        public let base: UInt64
        public let length: UInt64
        public let name: String
        public let device: any BusDevice
    }

    public let name: String
    private var entries: [Entry] = []
    private var isFrozen = false
    private let unhandled = Atomic<UInt64>(0)

    public init(name: String) { self.name = name }

    /// Registers `device` at `[base, base+length)`.
    public func insert(_ device: any BusDevice, base: UInt64, length: UInt64, name: String) throws(BusError) {
        guard !isFrozen else { throw .frozen }
        guard length > 0, base.addingReportingOverflow(length - 1).overflow == false else {
            throw .emptyOrOverflowing(name: name)
        }
        for entry in entries where base < entry.base + entry.length && entry.base < base + length {
            throw .overlap(name: name, with: entry.name)
        }
        entries.append(Entry(base: base, length: length, name: name, device: device))
        entries.sort { $0.base < $1.base }
    }

    /// Ends registration; after this the map is read-only and safe to share between vCPU threads.
    public func freeze() { isFrozen = true }

    /// The registered ranges, in address order.
    public var devices: [Entry] { entries }

    /// Number of accesses that hit no device.
    public var unhandledAccesses: UInt64 { unhandled.load(ordering: .relaxed) }

    @inline(__always)
    private func find(_ address: UInt64) -> Int? {
        var low = 0, high = entries.count - 1
        while low <= high {
            let mid = (low + high) >> 1
            let entry = entries[mid]
            if address < entry.base { high = mid - 1 }
            else if address - entry.base >= entry.length { low = mid + 1 }
            else { return mid }
        }
        return nil
    }

    /// Dispatches a read; unclaimed addresses read as all-ones. Returns false when no device claimed it.
    @discardableResult
    public func read(address: UInt64, into data: UnsafeMutableRawBufferPointer) -> Bool {
        guard let index = find(address) else {
            unhandled.add(1, ordering: .relaxed)
            data.storeAccessValue(UInt64.max)
            return false
        }
        let entry = entries[index]
        entry.device.read(offset: address - entry.base, into: data)
        return true
    }

    /// Dispatches a write; unclaimed writes are dropped and counted. Returns false when no device claimed it.
    @discardableResult
    public func write(address: UInt64, from data: UnsafeRawBufferPointer) -> Bool {
        guard let index = find(address) else {
            unhandled.add(1, ordering: .relaxed)
            return false
        }
        let entry = entries[index]
        entry.device.write(offset: address - entry.base, from: data)
        return true
    }
}

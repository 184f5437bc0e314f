import Memory

/// A protocol violation by the driver (or a device bug) that puts the device into NEEDS_RESET.
///
/// Everything here comes from guest-controlled values, so the message says what was seen; it is
/// logged once and the device stops processing until the driver resets it.
public enum VirtioError: Error, Equatable, CustomStringConvertible {
    case queueLayout(queue: Int, String)
    case availableIndexJump(queue: Int, available: UInt16, next: UInt16, size: UInt16)
    case headOutOfRange(queue: Int, head: UInt16, size: UInt16)
    case nextOutOfRange(queue: Int, next: UInt16, tableSize: Int)
    case chainTooLong(queue: Int, limit: Int)
    case descriptorOutsideRAM(queue: Int, address: UInt64, length: UInt32)
    case indirectNotNegotiated(queue: Int)
    case nestedIndirect(queue: Int)
    case indirectWithNext(queue: Int)
    case indirectTable(queue: Int, address: UInt64, length: UInt32)
    case readableAfterWritable(queue: Int)
    case chainTooLarge(queue: Int)
    case usedHeadOutOfRange(queue: Int, head: UInt16)
    case memory(GuestMemoryError)
    /// A device-specific request the device cannot even answer (e.g. no room for a status byte).
    case malformedRequest(String)

    public var description: String {
        switch self {
        case let .queueLayout(queue, why): return "queue \(queue): \(why)"
        case let .availableIndexJump(queue, available, next, size):
            return "queue \(queue): avail idx \(available) runs more than \(size) ahead of \(next)"
        case let .headOutOfRange(queue, head, size): return "queue \(queue): head \(head) outside a ring of \(size)"
        case let .nextOutOfRange(queue, next, tableSize): return "queue \(queue): next \(next) outside a table of \(tableSize)"
        case let .chainTooLong(queue, limit): return "queue \(queue): descriptor chain longer than \(limit) (a loop?)"
        case let .descriptorOutsideRAM(queue, address, length):
            return "queue \(queue): buffer 0x\(String(address, radix: 16))+0x\(String(length, radix: 16)) is not guest RAM"
        case let .indirectNotNegotiated(queue): return "queue \(queue): indirect descriptor without VIRTIO_F_INDIRECT_DESC"
        case let .nestedIndirect(queue): return "queue \(queue): indirect descriptor inside an indirect table"
        case let .indirectWithNext(queue): return "queue \(queue): descriptor has both INDIRECT and NEXT"
        case let .indirectTable(queue, address, length):
            return "queue \(queue): bad indirect table 0x\(String(address, radix: 16))+0x\(String(length, radix: 16))"
        case let .readableAfterWritable(queue): return "queue \(queue): device-readable descriptor after a device-writable one"
        case let .chainTooLarge(queue): return "queue \(queue): chain's total length exceeds 4 GiB"
        case let .usedHeadOutOfRange(queue, head): return "queue \(queue): device returned head \(head)"
        case let .memory(error): return error.description
        case let .malformedRequest(why): return "malformed request: \(why)"
        }
    }
}

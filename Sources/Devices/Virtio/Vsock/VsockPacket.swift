/// The 44-byte `virtio_vsock_hdr` (virtio 1.2 §5.10.6), little-endian on the wire.
public struct VsockHeader: Equatable, Sendable {
    public static let size = 44

    public enum Operation: UInt16, Sendable {
        case invalid = 0, request = 1, response = 2, reset = 3, shutdown = 4, readWrite = 5
        case creditUpdate = 6, creditRequest = 7
    }

    public static let typeStream: UInt16 = 1
    /// SHUTDOWN flags: the sender will receive no more / send no more.
    public static let shutdownReceive: UInt32 = 1
    public static let shutdownSend: UInt32 = 2

    public var sourceCID: UInt64 = 0
    public var destinationCID: UInt64 = 0
    public var sourcePort: UInt32 = 0
    public var destinationPort: UInt32 = 0
    public var length: UInt32 = 0
    public var type: UInt16 = VsockHeader.typeStream
    public var op: UInt16 = 0
    public var flags: UInt32 = 0
    public var bufferAllocation: UInt32 = 0
    public var forwardCount: UInt32 = 0

    public init() {}

    public init(op: Operation, sourceCID: UInt64, destinationCID: UInt64, sourcePort: UInt32, destinationPort: UInt32,
                length: UInt32 = 0, flags: UInt32 = 0, bufferAllocation: UInt32 = 0, forwardCount: UInt32 = 0) {
        self.op = op.rawValue
        self.sourceCID = sourceCID
        self.destinationCID = destinationCID
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.length = length
        self.flags = flags
        self.bufferAllocation = bufferAllocation
        self.forwardCount = forwardCount
    }

    public var operation: Operation? { Operation(rawValue: op) }

    /// Decodes the first 44 bytes of `bytes`.
    public init(bytes: [UInt8]) {
        self = bytes.withUnsafeBytes { VsockHeader(wire: $0) }
    }

    /// Stack room for one header's wire form (48 bytes; the header is the first 44).
    public typealias Wire = (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
    public static var emptyWire: Wire { (0, 0, 0, 0, 0, 0) }

    /// Decodes the first 44 bytes of `raw` (which holds at least that many) without allocating.
    public init(wire raw: UnsafeRawBufferPointer) {
        precondition(raw.count >= VsockHeader.size)
        func load<T: FixedWidthInteger>(_: T.Type, _ offset: Int) -> T {
            T(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
        sourceCID = load(UInt64.self, 0)
        destinationCID = load(UInt64.self, 8)
        sourcePort = load(UInt32.self, 16)
        destinationPort = load(UInt32.self, 20)
        length = load(UInt32.self, 24)
        type = load(UInt16.self, 28)
        op = load(UInt16.self, 30)
        flags = load(UInt32.self, 32)
        bufferAllocation = load(UInt32.self, 36)
        forwardCount = load(UInt32.self, 40)
    }

    /// Encodes the 44 wire bytes into the start of `raw` (at least that long) without allocating.
    public func store(into raw: UnsafeMutableRawBufferPointer) {
        precondition(raw.count >= VsockHeader.size)
        func put<T: FixedWidthInteger>(_ value: T, _ offset: Int) {
            raw.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
        }
        put(sourceCID, 0)
        put(destinationCID, 8)
        put(sourcePort, 16)
        put(destinationPort, 20)
        put(length, 24)
        put(type, 28)
        put(op, 30)
        put(flags, 32)
        put(bufferAllocation, 36)
        put(forwardCount, 40)
    }

    /// The 44 wire bytes.
    public var bytes: [UInt8] {
        var result = [UInt8](repeating: 0, count: VsockHeader.size)
        func store<T: FixedWidthInteger>(_ value: T, _ offset: Int) {
            for index in 0..<MemoryLayout<T>.size { result[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
        }
        store(sourceCID, 0)
        store(destinationCID, 8)
        store(sourcePort, 16)
        store(destinationPort, 20)
        store(length, 24)
        store(type, 28)
        store(op, 30)
        store(flags, 32)
        store(bufferAllocation, 36)
        store(forwardCount, 40)
        return result
    }
}

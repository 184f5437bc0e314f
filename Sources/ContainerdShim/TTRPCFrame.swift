import Foundation

/// One ttrpc frame (github.com/containerd/ttrpc, channel.go): a 10-byte header — payload length and
/// stream id (big-endian 32-bit), message type, flags — and the payload (a protobuf Request/Response).
struct TTRPCFrame {
    static let request: UInt8 = 1
    static let response: UInt8 = 2
    /// ttrpc's own limit; a longer frame from the peer is an error, never an allocation.
    static let maximumPayload = 4 << 20

    var streamID: UInt32
    var type: UInt8
    var payload: [UInt8]

    /// Reads one frame; nil at end of stream. Throws on a frame over the limit or a short read.
    static func read(from fd: Int32) throws -> TTRPCFrame? {
        var header = [UInt8](repeating: 0, count: 10)
        guard try readExactly(fd, &header, allowEOF: true) else { return nil }
        let length = Int(header[0]) << 24 | Int(header[1]) << 16 | Int(header[2]) << 8 | Int(header[3])
        let stream = UInt32(header[4]) << 24 | UInt32(header[5]) << 16 | UInt32(header[6]) << 8 | UInt32(header[7])
        guard length <= maximumPayload else { throw TTRPCError("frame of \(length) bytes exceeds ttrpc's \(maximumPayload)") }
        var payload = [UInt8](repeating: 0, count: length)
        if length > 0 { _ = try readExactly(fd, &payload, allowEOF: false) }
        return TTRPCFrame(streamID: stream, type: header[8], payload: payload)
    }

    /// The frame as bytes: header, then payload.
    var bytes: [UInt8] {
        let length = UInt32(payload.count)
        var out: [UInt8] = [UInt8(length >> 24), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff),
                            UInt8(streamID >> 24), UInt8(streamID >> 16 & 0xff), UInt8(streamID >> 8 & 0xff), UInt8(streamID & 0xff),
                            type, 0]
        out += payload
        return out
    }

    func write(to fd: Int32) throws {
        let data = bytes
        var offset = 0
        while offset < data.count {
            let written = data[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if written < 0 {
                if errno == EINTR { continue }
                throw TTRPCError("write: \(String(cString: strerror(errno)))")
            }
            offset += written
        }
    }

    /// Fills `buffer`; false when the stream ended before the first byte and `allowEOF`.
    private static func readExactly(_ fd: Int32, _ buffer: inout [UInt8], allowEOF: Bool) throws -> Bool {
        var offset = 0
        while offset < buffer.count {
            let count = buffer.count - offset
            let got = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + offset, count) }
            if got < 0 {
                if errno == EINTR { continue }
                throw TTRPCError("read: \(String(cString: strerror(errno)))")
            }
            if got == 0 {
                if offset == 0 && allowEOF { return false }
                throw TTRPCError("the peer closed the connection inside a frame")
            }
            offset += got
        }
        return true
    }
}

/// A ttrpc transport error (framing, socket).
struct TTRPCError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A gRPC status the task service answers with (containerd maps the code with errdefs.FromGRPC).
public struct ShimError: Error, CustomStringConvertible {
    public static let invalidArgument: Int32 = 3
    public static let notFound: Int32 = 5
    public static let alreadyExists: Int32 = 6
    public static let failedPrecondition: Int32 = 9
    public static let unimplemented: Int32 = 12
    public static let `internal`: Int32 = 13

    public let code: Int32
    public let message: String
    public init(_ code: Int32, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}

internal import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// What a backend's `receive` found.
public enum NetReceiveResult: Equatable, Sendable {
    /// One Ethernet frame of this many bytes is in the buffer.
    case frame(Int)
    /// Nothing to read now; the backend's `fd` becomes readable when there is.
    case wouldBlock
    /// The backend is gone (peer closed, protocol error); it will never produce another frame.
    case closed
}

/// What a backend's `send` did with a frame.
public enum NetSendResult: Equatable, Sendable {
    /// Accepted whole (a stream backend may still be flushing it; see `flush`).
    case sent
    /// Not accepted: try again once `fd` is writable.
    case wouldBlock
    /// Refused for good (backend gone, frame invalid for it); the frame is dropped.
    case failed
}

/// Where a virtio-net device's frames go: plain Ethernet frames, no virtio-net header, no offloads.
///
/// Used only on the device's worker thread. `fd` is polled edge-triggered for input, so `receive`
/// must be called until it says `wouldBlock` before the device can wait for the next edge.
public protocol NetBackend: AnyObject, Sendable {
    /// Readable when frames arrive; writable when `send` may succeed again after `wouldBlock`.
    var fd: Int32 { get }
    /// Reads one frame into `buffer` (which holds at least `VirtioNet.maxFrameLength` bytes).
    func receive(into buffer: UnsafeMutableRawBufferPointer) -> NetReceiveResult
    /// Sends one frame.
    func send(_ frame: UnsafeRawBufferPointer) -> NetSendResult
    /// Pushes out what an earlier `send` left buffered; true when nothing is left.
    func flush() -> Bool
}

extension NetBackend {
    public func flush() -> Bool { true }
}

/// A connected stream socket speaking QEMU's "stream" netdev protocol, as passt does on its
/// `--fd`/`--socket`: every frame is preceded by its length, 4 bytes big-endian.
///
/// Input is buffered so partial reads and several frames per read both work; a length of zero or
/// larger than `VirtioNet.maxFrameLength` cannot be resynchronised and closes the backend.
/// Output is written with one writev per frame; a short write keeps the rest and finishes it
/// before anything else is accepted, so frames never interleave.
/// @unchecked Sendable: Its buffers are used only by the one VirtioNet worker that owns the backend.
public final class StreamNetBackend: NetBackend, @unchecked Sendable {
    public let fd: Int32
    private var input: [UInt8]
    private var inputStart = 0, inputEnd = 0
    private var output: [UInt8] = []
    private var outputSent = 0
    private var closed = false

    /// Takes ownership of `fd` (made non-blocking here) and closes it on deinit.
    public init(fd: Int32) {
        self.fd = fd
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        input = [UInt8](repeating: 0, count: 4 * (VirtioNet.maxFrameLength + 4))
    }

    deinit { close(fd) }

    public func receive(into buffer: UnsafeMutableRawBufferPointer) -> NetReceiveResult {
        while !closed {
            let available = inputEnd - inputStart
            if available >= 4 {
                let length = input[inputStart..<inputStart + 4].reduce(0) { $0 << 8 | Int($1) }
                guard length > 0, length <= VirtioNet.maxFrameLength, length <= buffer.count else {
                    closed = true
                    return .closed
                }
                if available >= 4 + length {
                    input.withUnsafeBytes { raw in
                        buffer.baseAddress!.copyMemory(from: raw.baseAddress! + inputStart + 4, byteCount: length)
                    }
                    inputStart += 4 + length
                    if inputStart == inputEnd { inputStart = 0; inputEnd = 0 }
                    return .frame(length)
                }
            }
            // Make room at the end, then read as much as fits.
            if inputStart > 0 && inputEnd == input.count || inputStart > input.count / 2 {
                input.withUnsafeMutableBytes { raw in
                    _ = memmove(raw.baseAddress!, raw.baseAddress! + inputStart, inputEnd - inputStart)
                }
                inputEnd -= inputStart
                inputStart = 0
            }
            let count = input.withUnsafeMutableBytes { raw in
                recv(fd, raw.baseAddress! + inputEnd, raw.count - inputEnd, Int32(MSG_DONTWAIT))
            }
            if count > 0 {
                inputEnd += count
                continue
            }
            if count < 0 && errno == EINTR { continue }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return .wouldBlock }
            closed = true
        }
        return .closed
    }

    public func send(_ frame: UnsafeRawBufferPointer) -> NetSendResult {
        if closed { return .failed }
        guard flush() else { return .wouldBlock }
        guard frame.count > 0, frame.count <= VirtioNet.maxFrameLength else { return .failed }
        var prefix = UInt32(frame.count).bigEndian
        let total = 4 + frame.count
        var written = 0
        while true {
            written = withUnsafeMutableBytes(of: &prefix) { prefixBytes in
                var vectors = [iovec(iov_base: prefixBytes.baseAddress, iov_len: 4),
                               iovec(iov_base: UnsafeMutableRawPointer(mutating: frame.baseAddress), iov_len: frame.count)]
                var message = msghdr()
                return vectors.withUnsafeMutableBufferPointer { v in
                    message.msg_iov = v.baseAddress
                    message.msg_iovlen = 2
                    return sendmsg(fd, &message, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                }
            }
            if written < 0 && errno == EINTR { continue }
            break
        }
        if written == total { return .sent }
        if written < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK { return .wouldBlock }
            closed = true
            return .failed
        }
        // A short write: keep the rest; it goes out before any other frame.
        var rest = [UInt8](repeating: 0, count: total - written)
        withUnsafeBytes(of: &prefix) { prefixBytes in
            for index in written..<total {
                rest[index - written] = index < 4 ? prefixBytes[index] : frame[index - 4]
            }
        }
        output = rest
        outputSent = 0
        return .sent
    }

    public func flush() -> Bool {
        while outputSent < output.count {
            let count = output.withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress! + outputSent, raw.count - outputSent, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
            }
            if count > 0 { outputSent += count; continue }
            if count < 0 && errno == EINTR { continue }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return false }
            closed = true  // the peer is gone: drop what is left
            break
        }
        output = []
        outputSent = 0
        return true
    }
}

/// Why a TAP device could not be opened.
public struct TapError: Error, Equatable, CustomStringConvertible {
    public let name: String
    public let errno: Int32
    public let step: String

    public var description: String {
        if errno == EPERM || errno == EACCES {
            return "\(step) TAP \(name) is not permitted: that needs CAP_NET_ADMIN (run as root, or create it first with `ip tuntap add \(name) mode tap user $USER`)"
        }
        return "\(step) TAP \(name) failed: \(String(cString: strerror(errno)))"
    }
}

/// A Linux TAP interface: one read or write per frame, no packet-information prefix and no
/// virtio-net header (IFF_TAP | IFF_NO_PI without IFF_VNET_HDR: the device offers no offloads,
/// so the host kernel checksums and segments whatever it sends into the TAP).
public final class TapBackend: NetBackend, Sendable {
    public let fd: Int32
    public let name: String
    /// True when opening it created the interface (it then disappears when the VM ends).
    public let created: Bool

    /// Opens (creating if missing) TAP `name` and sets it up.
    public init(name: String) throws(TapError) {
        let existed = clinux_interface_exists(name) != 0
        let fd = clinux_tap_open(name)
        guard fd >= 0 else { throw TapError(name: name, errno: -fd, step: existed ? "attaching to" : "creating") }
        let up = clinux_interface_up(name)
        guard up == 0 else {
            close(fd)
            throw TapError(name: name, errno: -up, step: "setting up")
        }
        self.fd = fd
        self.name = name
        created = !existed
    }

    deinit { close(fd) }

    public func receive(into buffer: UnsafeMutableRawBufferPointer) -> NetReceiveResult {
        while true {
            let count = read(fd, buffer.baseAddress, buffer.count)
            if count > 0 { return .frame(count) }
            if count < 0 && errno == EINTR { continue }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return .wouldBlock }
            return .closed
        }
    }

    public func send(_ frame: UnsafeRawBufferPointer) -> NetSendResult {
        while true {
            let count = write(fd, frame.baseAddress, frame.count)
            if count == frame.count { return .sent }
            if count < 0 && errno == EINTR { continue }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return .wouldBlock }
            return .failed  // e.g. EIO while the interface is down: the frame is dropped, as a NIC would
        }
    }
}

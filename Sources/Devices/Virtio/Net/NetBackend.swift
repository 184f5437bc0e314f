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
    /// Reads one frame straight into `vectors` (guest buffers of `capacity` bytes in all). A frame
    /// longer than `capacity` is consumed and dropped: the result is then `.frame(n)` with
    /// n > `capacity` and what `vectors` hold is unspecified. `spill` (`VirtioNet.maxFrameLength`
    /// bytes) is scratch the backend may use.
    func receive(into vectors: UnsafeBufferPointer<iovec>, capacity: Int, spill: UnsafeMutableRawBufferPointer) -> NetReceiveResult
    /// Sends one frame of `length` bytes gathered from `vectors` (guest buffers); `scratch`
    /// (`VirtioNet.maxFrameLength` bytes) is there for a backend that must copy it first.
    func send(gathering vectors: UnsafeBufferPointer<iovec>, length: Int, scratch: UnsafeMutableRawBufferPointer) -> NetSendResult
}

extension NetBackend {
    public func flush() -> Bool { true }

    /// Through `spill`: one read, then one copy into the vectors.
    public func receive(into vectors: UnsafeBufferPointer<iovec>, capacity: Int, spill: UnsafeMutableRawBufferPointer) -> NetReceiveResult {
        let result = receive(into: spill)
        if case let .frame(length) = result, length <= capacity {
            NetVectors.scatter(UnsafeRawBufferPointer(rebasing: spill[0..<length]), into: vectors)
        }
        return result
    }

    /// Through `scratch`: one copy out of the vectors, then one send.
    public func send(gathering vectors: UnsafeBufferPointer<iovec>, length: Int, scratch: UnsafeMutableRawBufferPointer) -> NetSendResult {
        let copied = NetVectors.gather(vectors, into: scratch)
        return send(UnsafeRawBufferPointer(rebasing: scratch[0..<min(copied, length)]))
    }
}

/// Copies between a flat buffer and a list of iovecs.
enum NetVectors {
    /// Copies `bytes` into `vectors` in order; returns how many fitted.
    @discardableResult
    static func scatter(_ bytes: UnsafeRawBufferPointer, into vectors: UnsafeBufferPointer<iovec>) -> Int {
        var done = 0
        for vector in vectors where done < bytes.count {
            let take = min(vector.iov_len, bytes.count - done)
            memcpy(vector.iov_base, bytes.baseAddress! + done, take)
            done += take
        }
        return done
    }

    /// Copies `vectors` in order into `buffer`; returns how many bytes fitted.
    static func gather(_ vectors: UnsafeBufferPointer<iovec>, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        var done = 0
        for vector in vectors where done < buffer.count {
            let take = min(vector.iov_len, buffer.count - done)
            memcpy(buffer.baseAddress! + done, vector.iov_base, take)
            done += take
        }
        return done
    }

    /// Largest number of iovecs a backend passes to the kernel for one frame (plus its own one).
    static let capacity = 64
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
    /// The length prefix and a frame's pieces, for one sendmsg (worker thread only).
    private let sendVectors = UnsafeMutableBufferPointer<iovec>.allocate(capacity: NetVectors.capacity + 1)

    /// Takes ownership of `fd` (made non-blocking here) and closes it on deinit.
    public init(fd: Int32) {
        self.fd = fd
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        input = [UInt8](repeating: 0, count: 4 * (VirtioNet.maxFrameLength + 4))
    }

    deinit {
        close(fd)
        sendVectors.deallocate()
    }

    public func receive(into buffer: UnsafeMutableRawBufferPointer) -> NetReceiveResult {
        let result = nextFrame(limit: buffer.count)
        if case let .frame(length) = result {
            input.withUnsafeBytes { raw in
                buffer.baseAddress!.copyMemory(from: raw.baseAddress! + inputStart - length, byteCount: length)
            }
        }
        return result
    }

    /// One copy, from the input buffer straight into guest memory.
    public func receive(into vectors: UnsafeBufferPointer<iovec>, capacity: Int, spill: UnsafeMutableRawBufferPointer) -> NetReceiveResult {
        let result = nextFrame(limit: VirtioNet.maxFrameLength)
        if case let .frame(length) = result, length <= capacity {
            input.withUnsafeBytes { raw in
                NetVectors.scatter(UnsafeRawBufferPointer(start: raw.baseAddress! + inputStart - length, count: length), into: vectors)
            }
        }
        return result
    }

    /// Finds the next whole frame in the input (reading more as needed) and consumes it: on
    /// `.frame(n)` its bytes are the n bytes before `inputStart`, valid until the next call.
    private func nextFrame(limit: Int) -> NetReceiveResult {
        while !closed {
            let available = inputEnd - inputStart
            if available >= 4 {
                let length = input[inputStart..<inputStart + 4].reduce(0) { $0 << 8 | Int($1) }
                guard length > 0, length <= VirtioNet.maxFrameLength, length <= limit else {
                    closed = true
                    return .closed
                }
                if available >= 4 + length {
                    inputStart += 4 + length
                    // Reset to the front lazily (next call), so the frame's bytes stay put until then.
                    return .frame(length)
                }
            }
            // Make room at the end, then read as much as fits.
            if inputStart == inputEnd {
                inputStart = 0
                inputEnd = 0
            } else if inputStart > 0 && inputEnd == input.count || inputStart > input.count / 2 {
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

    /// One sendmsg of the length prefix and the guest's buffers; a short write keeps the rest.
    public func send(gathering vectors: UnsafeBufferPointer<iovec>, length: Int, scratch: UnsafeMutableRawBufferPointer) -> NetSendResult {
        guard vectors.count < sendVectors.count else {
            let copied = NetVectors.gather(vectors, into: scratch)
            return send(UnsafeRawBufferPointer(rebasing: scratch[0..<min(copied, length)]))
        }
        if closed { return .failed }
        guard flush() else { return .wouldBlock }
        guard length > 0, length <= VirtioNet.maxFrameLength else { return .failed }
        var prefix = UInt32(length).bigEndian
        return withUnsafeMutableBytes(of: &prefix) { prefixBytes in
            sendVectors[0] = iovec(iov_base: prefixBytes.baseAddress, iov_len: 4)
            for (index, vector) in vectors.enumerated() { sendVectors[index + 1] = vector }
            return sendFrame(UnsafeBufferPointer(rebasing: sendVectors[0..<vectors.count + 1]), total: 4 + length)
        }
    }

    /// Sends `vectors` (prefix and frame) with one sendmsg; keeps what a short write left.
    private func sendFrame(_ vectors: UnsafeBufferPointer<iovec>, total: Int) -> NetSendResult {
        var written = 0
        while true {
            var message = msghdr()
            message.msg_iov = UnsafeMutablePointer(mutating: vectors.baseAddress)
            message.msg_iovlen = vectors.count
            written = sendmsg(fd, &message, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
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
        var rest = [UInt8](repeating: 0, count: total)
        rest.withUnsafeMutableBytes { _ = NetVectors.gather(vectors, into: $0) }
        output = Array(rest[written...])
        outputSent = 0
        return .sent
    }

    public func send(_ frame: UnsafeRawBufferPointer) -> NetSendResult {
        if closed { return .failed }
        guard flush() else { return .wouldBlock }
        guard frame.count > 0, frame.count <= VirtioNet.maxFrameLength else { return .failed }
        var prefix = UInt32(frame.count).bigEndian
        return withUnsafeMutableBytes(of: &prefix) { prefixBytes in
            sendVectors[0] = iovec(iov_base: prefixBytes.baseAddress, iov_len: 4)
            sendVectors[1] = iovec(iov_base: UnsafeMutableRawPointer(mutating: frame.baseAddress), iov_len: frame.count)
            return sendFrame(UnsafeBufferPointer(rebasing: sendVectors[0..<2]), total: 4 + frame.count)
        }
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
/// @unchecked Sendable: `vectors` is used only by the one VirtioNet worker that owns the backend.
public final class TapBackend: NetBackend, @unchecked Sendable {
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

    deinit {
        close(fd)
        vectors.deallocate()
    }

    /// The guest's buffers and one spill buffer behind them, for one readv (worker thread only).
    private let vectors = UnsafeMutableBufferPointer<iovec>.allocate(capacity: NetVectors.capacity + 1)

    /// One readv straight into guest memory; a frame too long for it lands partly in `spill`
    /// and is reported longer than `capacity` (dropped).
    public func receive(into guest: UnsafeBufferPointer<iovec>, capacity: Int, spill: UnsafeMutableRawBufferPointer) -> NetReceiveResult {
        guard guest.count < vectors.count else {
            let result = receive(into: spill)
            if case let .frame(length) = result, length <= capacity {
                NetVectors.scatter(UnsafeRawBufferPointer(rebasing: spill[0..<length]), into: guest)
            }
            return result
        }
        for (index, vector) in guest.enumerated() { vectors[index] = vector }
        vectors[guest.count] = iovec(iov_base: spill.baseAddress, iov_len: spill.count)
        while true {
            let count = readv(fd, vectors.baseAddress, Int32(guest.count + 1))
            if count > 0 { return .frame(count) }
            if count < 0 && errno == EINTR { continue }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return .wouldBlock }
            return .closed
        }
    }

    /// One writev straight from guest memory.
    public func send(gathering guest: UnsafeBufferPointer<iovec>, length: Int, scratch: UnsafeMutableRawBufferPointer) -> NetSendResult {
        while true {
            let count = writev(fd, guest.baseAddress, Int32(guest.count))
            if count == length { return .sent }
            if count < 0 && errno == EINTR { continue }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return .wouldBlock }
            return .failed
        }
    }

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

internal import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// A private epoll set a device lists in its `eventSources`: the worker polls the poller's own
/// descriptor (readable whenever one of the watched descriptors has an event), and the device
/// drains it in `handleEvent`. It lets a device watch descriptors that come and go (vsock
/// connections) and wait for writability, which the worker's fixed EPOLLIN list cannot express.
public final class EventPoller: Sendable {
    /// Event bits, as epoll(7) reports them.
    public struct Events: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        // The values of <sys/epoll.h> (the C shim asserts they match).
        public static let readable = Events(rawValue: 0x001)
        public static let writable = Events(rawValue: 0x004)
        public static let error = Events(rawValue: 0x008)
        public static let hangUp = Events(rawValue: 0x010)
        public static let peerClosed = Events(rawValue: 0x2000)
        /// Report once, then stay quiet until re-armed with `modify`.
        public static let oneShot = Events(rawValue: 1 << 30)
        /// Edge-triggered: report changes only.
        public static let edge = Events(rawValue: 1 << 31)
    }

    /// The descriptor to list in `eventSources`.
    public let fd: Int32

    public init() throws(EventFDError) {
        let fd = clinux_epoll_create()
        guard fd >= 0 else { throw EventFDError(errno: -fd) }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Starts watching `descriptor`; `token` comes back with its events. Returns 0 or an errno.
    @discardableResult
    public func add(_ descriptor: Int32, events: Events, token: UInt64) -> Int32 {
        -clinux_epoll_ctl(fd, 1, descriptor, events.rawValue, token)
    }

    /// Changes what `descriptor` is watched for (re-arms a one-shot watch).
    @discardableResult
    public func modify(_ descriptor: Int32, events: Events, token: UInt64) -> Int32 {
        -clinux_epoll_ctl(fd, 3, descriptor, events.rawValue, token)
    }

    /// Stops watching `descriptor` (closing it also does).
    public func remove(_ descriptor: Int32) {
        _ = clinux_epoll_ctl(fd, 2, descriptor, 0, 0)
    }

    /// Every pending event, without waiting.
    public func drain() -> [(token: UInt64, events: Events)] {
        var result: [(UInt64, Events)] = []
        var tokens = [UInt64](repeating: 0, count: 64)
        var masks = [UInt32](repeating: 0, count: 64)
        while true {
            let count = tokens.withUnsafeMutableBufferPointer { t in
                masks.withUnsafeMutableBufferPointer { m in
                    clinux_epoll_wait_events(fd, t.baseAddress, m.baseAddress, 64, 0)
                }
            }
            if count == -EINTR { continue }
            guard count > 0 else { break }
            for index in 0..<Int(count) { result.append((tokens[index], Events(rawValue: masks[index]))) }
            if count < 64 { break }
        }
        return result
    }
}

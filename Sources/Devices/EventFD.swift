internal import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// Why an eventfd could not be created.
public struct EventFDError: Error, Equatable, CustomStringConvertible {
    public let errno: Int32
    public var description: String { "eventfd failed: \(String(cString: strerror(errno))) (errno \(errno))" }
}

/// An eventfd(2) counter: a doorbell between threads, or between KVM and a device thread.
///
/// Non-blocking and close-on-exec; the descriptor is closed when the object goes away, so whoever
/// registers `fd` with KVM (irqfd, ioeventfd) must keep the EventFD alive at least as long.
public final class EventFD: Sendable {
    public let fd: Int32

    public init() throws(EventFDError) {
        let fd = clinux_eventfd()
        guard fd >= 0 else { throw EventFDError(errno: -fd) }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Adds `count` to the counter, waking any poller. Saturation (EAGAIN) still leaves it readable.
    public func signal(_ count: UInt64 = 1) {
        var value = count
        while write(fd, &value, 8) < 0 && errno == EINTR {}
    }

    /// Reads and clears the counter; 0 when it was not signalled.
    @discardableResult
    public func consume() -> UInt64 {
        var value: UInt64 = 0
        while true {
            if read(fd, &value, 8) == 8 { return value }
            if errno != EINTR { return 0 }
        }
    }

    /// Waits up to `milliseconds` (-1: forever) for a signal, then consumes it; returns the count (0 on timeout).
    @discardableResult
    public func wait(milliseconds: Int32) -> UInt64 {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&entry, 1, milliseconds)
        return ready > 0 ? consume() : 0
    }
}

internal import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// Why a device worker could not start.
public struct VirtioWorkerError: Error, Equatable, CustomStringConvertible {
    public let operation: String
    public let errno: Int32
    public var description: String { "\(operation) failed: \(String(cString: strerror(errno))) (errno \(errno))" }
}

/// One device's worker: a plain pthread in epoll over its queue notifiers, its backends' descriptors
/// and a stop eventfd, so queue processing and backend I/O never run on a vCPU thread.
/// @unchecked Sendable: `thread` and `joined` are written only by `start` and `stop`, on the VMM's main thread; the worker thread itself only reads the epoll and eventfd descriptors, which never change.
final class VirtioWorker: @unchecked Sendable {
    private static let stopToken = UInt64.max
    private static let resumeToken = UInt64.max - 1
    private static let sourceBase: UInt64 = 1 << 32

    private let epoll: Int32
    private let stopFD: EventFD
    private var thread = pthread_t()
    private var joined = false

    /// `threadStart` runs first on the new thread (the VMM's sandbox for device threads).
    init(transport: VirtioMMIOTransport, threadStart: (@Sendable (String) -> Void)?) throws(VirtioWorkerError) {
        let epoll = clinux_epoll_create()
        guard epoll >= 0 else { throw VirtioWorkerError(operation: "epoll_create1", errno: -epoll) }
        do {
            stopFD = try EventFD()
        } catch {
            close(epoll)
            throw VirtioWorkerError(operation: "eventfd", errno: error.errno)
        }
        self.epoll = epoll
        // Notifiers are level-triggered (consumed each wake); backends are edge-triggered so a device
        // with no buffers for a readable socket is not woken again until something changes.
        var watches: [(fd: Int32, edge: Int32, token: UInt64)] = [(stopFD.fd, 0, VirtioWorker.stopToken), (transport.resumeNotifier.fd, 0, VirtioWorker.resumeToken)]
        for (index, notifier) in transport.queueNotifiers.enumerated() { watches.append((notifier.fd, 0, UInt64(index))) }
        for (index, fd) in transport.device.eventSources.enumerated() {
            watches.append((fd, 1, VirtioWorker.sourceBase + UInt64(index)))
        }
        for watch in watches {
            let result = clinux_epoll_add(epoll, watch.fd, watch.edge, watch.token)
            guard result == 0 else {
                close(epoll)
                throw VirtioWorkerError(operation: "epoll_ctl", errno: -result)
            }
        }

        let stop = stopFD
        let name = "vireo-\(transport.name)"
        switch DeviceThread.start({
            clinux_set_thread_name(name)
            threadStart?(transport.name)
            _ = stop  // kept alive for as long as the thread polls it
            VirtioWorker.loop(epoll: epoll, transport: transport)
        }) {
        case .success(let started): thread = started
        case .failure(let error):
            close(epoll)
            throw VirtioWorkerError(operation: "pthread_create", errno: error.errno)
        }
    }

    /// Wakes the thread, waits for it to finish what it is doing, and releases its descriptors.
    func stop() {
        guard !joined else { return }
        joined = true
        stopFD.signal()
        pthread_join(thread, nil)
        close(epoll)
    }

    deinit { stop() }

    private static func loop(epoll: Int32, transport: VirtioMMIOTransport) {
        var tokens = [UInt64](repeating: 0, count: 16)
        while true {
            let count = tokens.withUnsafeMutableBufferPointer { clinux_epoll_wait(epoll, $0.baseAddress, Int32($0.count), -1) }
            if count < 0 {
                if count == -EINTR { continue }
                transport.log("\(transport.name): epoll_wait failed (errno \(-count)); worker stops")
                return
            }
            for token in tokens[0..<Int(count)] {
                if token == stopToken { return }
                if token == resumeToken {
                    _ = transport.resumeNotifier.consume()
                    transport.serviceDeferred()
                    continue
                }
                if token < sourceBase {
                    transport.queueNotifiers[Int(token)].consume()
                    transport.serviceQueue(Int(token))
                } else {
                    transport.serviceEvent(Int(token - sourceBase))
                }
            }
        }
    }
}

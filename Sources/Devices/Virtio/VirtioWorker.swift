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
        let body = WorkerBody {
            clinux_set_thread_name(name)
            threadStart?(transport.name)
            _ = stop  // kept alive for as long as the thread polls it
            VirtioWorker.loop(epoll: epoll, transport: transport)
        }
        let context = Unmanaged.passRetained(body).toOpaque()
        // The worker blocks every signal: process-directed ones (SIGINT, SIGTERM) belong to the VMM's
        // signal thread and must neither interrupt nor kill a device thread.
        // Synchronous signals stay deliverable: a blocked SIGSYS from the seccomp filter would kill
        // the VMM without the reporter naming the syscall.
        var all = sigset_t(), previous = sigset_t()
        sigfillset(&all)
        for synchronous in [SIGSYS, SIGSEGV, SIGBUS, SIGILL, SIGFPE] { sigdelset(&all, synchronous) }
        pthread_sigmask(SIG_SETMASK, &all, &previous)
        let result = pthread_create(&thread, nil, { argument in
            Unmanaged<WorkerBody>.fromOpaque(argument!).takeRetainedValue().run()
            return nil
        }, context)
        pthread_sigmask(SIG_SETMASK, &previous, nil)
        guard result == 0 else {
            Unmanaged<WorkerBody>.fromOpaque(context).release()
            close(epoll)
            throw VirtioWorkerError(operation: "pthread_create", errno: result)
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

/// The closure a worker thread runs, boxed for pthread_create's context pointer.
private final class WorkerBody {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

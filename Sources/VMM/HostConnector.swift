import Devices
import Synchronization

/// Opens guest-initiated vsock connections to host socket paths on a thread of its own, under the
/// control filter, so the vsock worker (device filter: no socket, no connect) never needs to.
/// The worker waits for each answer: a Unix-socket connect does not block on a listener's backlog
/// for long, and connections are rare next to packets.
/// @unchecked Sendable: `thread` is set once by `start` on the main thread; requests and answers cross threads only through the `exchange` Mutex and the two Wakeups.
final class HostConnector: @unchecked Sendable {
    private struct Exchange {
        var path: String?
        var result: Int32?
        var stopping = false
    }

    private let exchange = Mutex(Exchange())
    private let requestPosted = Wakeup()
    private let answerPosted = Wakeup()
    private var thread: OSThread?

    init() {}

    /// Starts the thread; called on the main thread once isolation is in place (it inherits the
    /// control filter and CPU affinity).
    func start() {
        guard thread == nil else { return }
        thread = OSThread(name: "vireo-vsock-conn") { [self] in serve() }
    }

    /// Connects to `path`; nil when it cannot (the device then resets the guest's request).
    /// Called only by the vsock worker, one request at a time.
    func connect(_ path: String) -> Int32? {
        exchange.withLock { $0.path = path; $0.result = nil }
        requestPosted.post()
        while true {
            answerPosted.wait(seconds: 1)
            if let result = exchange.withLock({ e -> Int32? in defer { if e.result != nil { e.result = nil } }; return e.result }) {
                return result >= 0 ? result : nil
            }
            if exchange.withLock({ $0.stopping }) { return nil }
        }
    }

    /// Ends the thread (after the workers stopped).
    func stop() {
        exchange.withLock { $0.stopping = true }
        requestPosted.post()
        if thread != nil { requestPosted.post() }
        thread?.join()
    }

    private func serve() {
        while true {
            requestPosted.wait(seconds: 3600)
            let (path, stopping) = exchange.withLock { e -> (String?, Bool) in defer { e.path = nil }; return (e.path, e.stopping) }
            if stopping { return }
            guard let path else { continue }
            let fd = (try? UnixSockets.connect(path: path)) ?? -1
            exchange.withLock { $0.result = fd }
            answerPosted.post()
        }
    }
}

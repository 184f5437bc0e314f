internal import CLinux
import Memory
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// virtio-console (type 3, virtio 1.2 §5.3): one port (hvc0), no MULTIPORT, no SIZE, no EMERG_WRITE.
///
/// Two backends: a file (guest output appended, no input), or a listening Unix socket where one
/// client at a time gets the guest's output and its input goes to the guest (a newer client
/// replaces the older). Input is read only while the guest has receive buffers posted, so a guest
/// not reading pushes back on the client. Output nobody can take (no client, or a client that does
/// not read) is dropped and counted: a console must not stop the guest.
/// @unchecked Sendable: The client descriptor and file state are touched only by the device's worker, under the transport's engine lock; counters other threads read sit in a Mutex.
public final class VirtioConsole: VirtioDevice, @unchecked Sendable {
    public static let receiveQueue = 0, transmitQueue = 1
    public static let queueSize: UInt16 = 256
    static let batchLimit = 256

    public enum Backend: Sendable {
        /// Output appended to this file descriptor (owned by the device).
        case file(Int32)
        /// A listening Unix socket (owned by the device).
        case socket(listener: Int32)
    }

    public struct Statistics: Sendable, Equatable {
        public var bytesOut: UInt64 = 0
        public var bytesIn: UInt64 = 0
        public var bytesDropped: UInt64 = 0
        public var clients: UInt64 = 0
    }

    private let backend: Backend
    private let poller: EventPoller
    private let kick: EventFD
    private let counters = Mutex(Statistics())
    private var client: Int32 = -1
    private var clientReadable = false
    /// The file backend's size bound: the guest decides how much it writes, so past this its
    /// output is dropped (and counted) instead of filling the host's disk.
    private let fileLimit: UInt64
    private var fileSize: UInt64 = 0

    /// What the file backend keeps by default: 64 MiB.
    public static let defaultFileLimit: UInt64 = 64 << 20

    public init(backend: Backend, fileLimit: UInt64 = VirtioConsole.defaultFileLimit) throws(EventFDError) {
        self.backend = backend
        self.fileLimit = fileLimit
        if case let .file(fd) = backend { fileSize = UInt64(max(lseek(fd, 0, SEEK_END), 0)) }
        poller = try EventPoller()
        kick = try EventFD()
        if case let .socket(listener) = backend {
            _ = fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) | O_NONBLOCK)
            poller.add(listener, events: [.readable, .edge], token: 0)
        }
    }

    deinit {
        if client >= 0 { close(client) }
        switch backend {
        case let .file(fd): close(fd)
        case let .socket(listener): close(listener)
        }
    }

    public var statistics: Statistics { counters.withLock { $0 } }

    public var deviceType: VirtioDeviceType { .console }
    public var deviceFeatures: UInt64 { 0 }
    public var queueMaxSizes: [UInt16] { [VirtioConsole.queueSize, VirtioConsole.queueSize] }

    public func readConfig(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        VirtioConfigSpace(size: 12).read(offset: offset, into: data)
    }

    public var eventSources: [Int32] { [poller.fd, kick.fd] }

    public func activate(_ activation: VirtioActivation) throws(VirtioError) { kick.signal() }

    public func processQueue(_ index: Int, activation: VirtioActivation) throws(VirtioError) {
        if index == VirtioConsole.transmitQueue { try transmit(activation) } else { try receive(activation) }
    }

    public func handleEvent(source: Int, activation: VirtioActivation?) throws(VirtioError) {
        if source == 0 {
            for (token, _) in poller.drain() {
                if token == 0 { acceptClient() } else { clientReadable = true }
            }
        } else {
            kick.consume()
        }
        guard let activation else { return }
        try transmit(activation)
        try receive(activation)
    }

    private func acceptClient() {
        guard case let .socket(listener) = backend else { return }
        while true {
            let fd = clinux_accept(listener)
            if fd < 0 {
                if fd == -EINTR || fd == -ECONNABORTED { continue }
                return
            }
            if client >= 0 { dropClient() }
            client = fd
            clientReadable = true
            poller.add(fd, events: [.readable, .peerClosed, .edge], token: 1)
            counters.withLock { $0.clients += 1 }
        }
    }

    private func dropClient() {
        poller.remove(client)
        close(client)
        client = -1
        clientReadable = false
    }

    private func transmit(_ activation: VirtioActivation) throws(VirtioError) {
        guard let queue = activation.queue(VirtioConsole.transmitQueue) else { return }
        for _ in 0..<VirtioConsole.batchLimit {
            guard let chain = try queue.popAvailable() else { return }
            var written = 0, dropped = 0
            var target = client, isFile = false
            if case let .file(fd) = backend { target = fd; isFile = true }
            try chain.forEachPiece(writable: false, from: 0, length: chain.readableLength, memory: activation.memory) { view in
                var done = 0
                // The file's room left; a socket has none to keep (the client reads it away).
                let room = isFile ? Int(min(UInt64(view.count), fileLimit - min(fileSize, fileLimit))) : view.count
                while target >= 0 && done < room {
                    let result = isFile ? write(target, view.baseAddress! + done, room - done)
                        : send(target, view.baseAddress! + done, view.count - done, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                    if result > 0 { done += result; continue }
                    if result < 0 && errno == EINTR { continue }
                    if !isFile && result < 0 && errno != EAGAIN && errno != EWOULDBLOCK { dropClient() }
                    break
                }
                written += done
                if isFile { fileSize += UInt64(done) }
                dropped += view.count - done
            }
            counters.withLock {
                $0.bytesOut += UInt64(written)
                $0.bytesDropped += UInt64(dropped)
            }
            try queue.addUsed(head: chain.head, length: 0)
        }
        kick.signal()
    }

    private func receive(_ activation: VirtioActivation) throws(VirtioError) {
        guard let queue = activation.queue(VirtioConsole.receiveQueue) else { return }
        for _ in 0..<VirtioConsole.batchLimit {
            guard client >= 0, clientReadable else { return }
            // Peek first so no input is taken without a buffer to put it in.
            var probe: UInt8 = 0
            let peeked = recv(client, &probe, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
            if peeked < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { clientReadable = false; return }
            if peeked <= 0 { if errno != EINTR { dropClient() }; return }
            guard let chain = try queue.popAvailable() else { return }  // the driver's refill notifies us
            var vectors: [iovec] = []
            try chain.forEachPiece(writable: true, from: 0, length: chain.writableLength, memory: activation.memory) { view in
                vectors.append(iovec(iov_base: view.baseAddress, iov_len: view.count))
            }
            var count = 0
            repeat {
                count = vectors.withUnsafeMutableBufferPointer { Int(readv(client, $0.baseAddress, Int32($0.count))) }
            } while count < 0 && errno == EINTR
            try queue.addUsed(head: chain.head, length: UInt32(max(count, 0)))
            if count > 0 { counters.withLock { $0.bytesIn += UInt64(count) } }
        }
        kick.signal()
    }
}

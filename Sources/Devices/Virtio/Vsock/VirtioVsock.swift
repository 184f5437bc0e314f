internal import CLinux
import Memory
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Counters of the vsock device (read from any thread).
public struct VsockStatistics: Sendable, Equatable {
    /// Connections open now (established or being set up with the guest).
    public var connections = 0
    /// Connections ever established, by who asked.
    public var hostInitiated: UInt64 = 0
    public var guestInitiated: UInt64 = 0
    public var resetsSent: UInt64 = 0
    public var resetsReceived: UInt64 = 0
    /// Payload bytes guest → host and host → guest.
    public var bytesFromGuest: UInt64 = 0
    public var bytesToGuest: UInt64 = 0
    /// Packets the guest sent that were dropped without a reply (wrong source CID, non-stream type, …).
    public var dropped: UInt64 = 0
    /// Times a packet for the guest waited for a receive buffer.
    public var receiveWaits: UInt64 = 0
    /// Control packets for the guest not queued because the queue was full (a guest that floods
    /// requests and posts no receive buffers), and CREDIT_REQUESTs folded into one already queued.
    public var controlDropped: UInt64 = 0
    public var creditRequestsCoalesced: UInt64 = 0

    public init() {}
}

/// virtio-vsock (type 19, virtio 1.2 §5.10) served in user space, with Firecracker's host interface.
///
/// The host side is a listening Unix socket `socketPath`:
/// - host-initiated: a client connects to `socketPath` and writes `CONNECT <port>\n`; the device
///   sends the guest a REQUEST from the host (CID 2) on a fresh local port to guest port `<port>`,
///   and on the guest's RESPONSE writes `OK <local port>\n` to the client; from then on the socket
///   carries the stream. A RST from the guest (nobody listening) closes the client without `OK`.
///   A client that connects before the guest's driver runs waits until it does.
/// - guest-initiated: a REQUEST to host port P connects to the Unix socket `<socketPath>_P`; RST when
///   nothing listens there.
///
/// Stream only (no SEQPACKET feature). Flow control is credit-based both ways: the device advertises
/// `bufferSize` bytes per connection and keeps at most that much of the guest's data while the host
/// socket is slow (a guest that overruns its credit is reset), and sends the guest no more than the
/// credit the guest advertised. Host sockets are read straight into guest receive buffers only while
/// the guest has credit and buffers, so a slow guest pushes back on the host peer.
/// Connections known to the guest are closed when the driver resets the device.
/// @unchecked Sendable: Connection tables and queues are touched only by the device's worker, under the transport's engine lock; counters other threads read sit in a Mutex.
public final class VirtioVsock: VirtioDevice, @unchecked Sendable {
    public static let receiveQueue = 0, transmitQueue = 1, eventQueue = 2
    public static let queueSize: UInt16 = 256
    public static let hostCID: UInt64 = 2
    /// Receive buffer space advertised per connection (buf_alloc).
    public static let bufferSize: UInt32 = 256 * 1024
    /// Largest payload in one packet, either way (Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE).
    public static let maxPayload = 64 * 1024
    public static let maxConnections = 1024
    /// Control packets (RESPONSE, RST, …) queued for the guest at most; past that RSTs are dropped.
    static let maxQueuedControl = 4096
    static let batchLimit = 256
    /// Host-initiated connections get local ports from here up.
    static let firstLocalPort: UInt32 = 1 << 30

    public let guestCID: UInt64
    private let connectHost: @Sendable (String) -> Int32?
    public let socketPath: String
    private let listener: Int32
    private let poller: EventPoller
    let kick: EventFD
    private let counters = Mutex(VsockStatistics())

    enum State {
        /// Host client connected, reading its `CONNECT <port>` line.
        case awaitingConnect
        /// Host client asked for a port; the REQUEST goes out once a driver runs.
        case awaitingDriver
        /// REQUEST queued or sent, waiting for the guest's RESPONSE.
        case requesting
        case established
    }

    final class Connection {
        let id: UInt64
        let fd: Int32
        let hostInitiated: Bool
        var state: State
        var localPort: UInt32 = 0
        var peerPort: UInt32 = 0
        // The guest's receive credit, from the last header it sent.
        var peerBufferAllocation: UInt32 = 0
        var peerForwardCount: UInt32 = 0
        /// Payload bytes sent to the guest.
        var sentToGuest: UInt32 = 0
        /// Guest payload bytes written to the host socket (our fwd_cnt), and what the guest last heard.
        var forwarded: UInt32 = 0
        var advertisedForward: UInt32 = 0
        /// Guest data the host socket has not taken yet (at most `bufferSize`).
        var pending: [UInt8] = []
        var pendingSent = 0
        var hostReadable = false
        var hostEOF = false
        var guestStopsSending = false
        var guestStopsReceiving = false
        var handshake: [UInt8] = []
        /// A CREDIT_UPDATE for this connection waits in the control queue: more requests fold into it.
        var creditUpdateQueued = false

        init(id: UInt64, fd: Int32, hostInitiated: Bool, state: State) {
            self.id = id
            self.fd = fd
            self.hostInitiated = hostInitiated
            self.state = state
        }

        var credit: UInt32 { peerBufferAllocation &- (sentToGuest &- peerForwardCount) }
        var pendingBytes: Int { pending.count - pendingSent }
        var key: Key { Key(local: localPort, peer: peerPort) }
    }

    struct Key: Hashable {
        let local: UInt32
        let peer: UInt32
    }

    struct Control {
        var op: VsockHeader.Operation
        var localPort: UInt32
        var peerPort: UInt32
        var flags: UInt32 = 0
        /// Credit fields come from this connection when it still exists at delivery.
        var connection: UInt64?
    }

    // Worker-thread state (serialised by the transport).
    var connections: [UInt64: Connection] = [:]
    private var byKey: [Key: UInt64] = [:]
    private var nextID: UInt64 = 1
    private var nextLocalPort = VirtioVsock.firstLocalPort
    private var control: [Control] = []
    private var controlStart = 0
    /// Connections that may have data for the guest, in service order.
    private var ready: [UInt64] = []
    private var readySet: Set<UInt64> = []
    var heldChain: DescriptorChain?
    private var active = false
    /// iovecs between guest buffers and host sockets (worker thread only).
    private let vectors = UnsafeMutableBufferPointer<iovec>.allocate(capacity: 64)

    public var snapshotConfiguration: String { "cid=\(guestCID)" }

    /// `listener` is a listening, non-blocking Unix socket at `socketPath` (see `UnixSockets.listen`),
    /// owned by the device from now on. `connect` opens a guest-initiated connection to a host path;
    /// the VMM passes one that runs on a thread allowed to make sockets (the worker is not).
    public init(guestCID: UInt64, socketPath: String, listener: Int32,
                connect: @escaping @Sendable (String) -> Int32? = { try? UnixSockets.connect(path: $0) }) throws(EventFDError) {
        self.guestCID = guestCID
        self.connectHost = connect
        self.socketPath = socketPath
        self.listener = listener
        _ = fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) | O_NONBLOCK)
        poller = try EventPoller()
        kick = try EventFD()
        poller.add(listener, events: [.readable, .edge], token: 0)
    }

    deinit {
        for connection in connections.values { close(connection.fd) }
        close(listener)
        vectors.deallocate()
    }

    public var statistics: VsockStatistics { counters.withLock { $0 } }

    public var deviceType: VirtioDeviceType { .vsock }
    public var deviceFeatures: UInt64 { 0 }  // stream sockets only
    public var queueMaxSizes: [UInt16] { [VirtioVsock.queueSize, VirtioVsock.queueSize, VirtioVsock.queueSize] }

    public func readConfig(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        var config = VirtioConfigSpace(size: 8)
        config.set(guestCID, at: 0)
        config.read(offset: offset, into: data)
    }

    /// Sources: 0 the poller (listener and connections), 1 the self-kick.
    public var eventSources: [Int32] { [poller.fd, kick.fd] }

    public func activate(_ activation: VirtioActivation) throws(VirtioError) {
        active = true
        kick.signal()  // send the REQUESTs of host clients that waited for the driver
    }

    public func reset() {
        active = false
        heldChain = nil
        control = []
        controlStart = 0
        ready = []
        readySet = []
        for connection in Array(connections.values) {
            switch connection.state {
            case .awaitingConnect, .awaitingDriver: break
            case .requesting: connection.state = .awaitingDriver  // asked again once a driver runs
            case .established: remove(connection)
            }
        }
    }

    public func processQueue(_ index: Int, activation: VirtioActivation) throws(VirtioError) {
        switch index {
        case VirtioVsock.transmitQueue:
            try transmit(activation)
            try deliver(activation)
        case VirtioVsock.receiveQueue:
            try deliver(activation)
        default:
            break  // event queue: buffers stay with the device until an event (none is ever sent)
        }
    }

    public func handleEvent(source: Int, activation: VirtioActivation?) throws(VirtioError) {
        if source == 0 {
            for (token, events) in poller.drain() { hostEvent(token: token, events: events) }
        } else {
            kick.consume()
        }
        guard let activation else { return }
        issueRequests()
        try transmit(activation)
        try deliver(activation)
    }

    // MARK: host side

    private func hostEvent(token: UInt64, events: EventPoller.Events) {
        if token == 0 {
            acceptClients()
            return
        }
        guard let connection = connections[token] else { return }
        switch connection.state {
        case .awaitingConnect:
            readHandshake(connection)
        case .awaitingDriver, .requesting:
            if !events.intersection([.hangUp, .error, .peerClosed]).isEmpty {
                if connection.state == .requesting { queueReset(connection) }
                remove(connection)
            }
        case .established:
            if !events.intersection([.readable, .hangUp, .error, .peerClosed]).isEmpty {
                connection.hostReadable = true
                markReady(connection)
            }
            if events.contains(.writable) || events.contains(.error) { flushToHost(connection) }
        }
    }

    private func acceptClients() {
        while true {
            let fd = clinux_accept(listener)
            if fd < 0 {
                if fd == -EINTR || fd == -ECONNABORTED { continue }
                return
            }
            guard connections.count < VirtioVsock.maxConnections else { close(fd); continue }
            let connection = add(fd: fd, hostInitiated: true, state: .awaitingConnect)
            readHandshake(connection)
        }
    }

    private func add(fd: Int32, hostInitiated: Bool, state: State) -> Connection {
        let connection = Connection(id: nextID, fd: fd, hostInitiated: hostInitiated, state: state)
        nextID += 1
        connections[connection.id] = connection
        poller.add(fd, events: [.readable, .writable, .peerClosed, .edge], token: connection.id)
        counters.withLock { $0.connections = connections.count }
        return connection
    }

    private func remove(_ connection: Connection) {
        poller.remove(connection.fd)
        close(connection.fd)
        connections[connection.id] = nil
        if byKey[connection.key] == connection.id { byKey[connection.key] = nil }
        if readySet.remove(connection.id) != nil { ready.removeAll { $0 == connection.id } }
        counters.withLock { $0.connections = connections.count }
    }

    /// Reads `CONNECT <port>\n` without consuming anything past the newline (the stream follows it).
    private func readHandshake(_ connection: Connection) {
        var peek = [UInt8](repeating: 0, count: 32)
        let count = peek.withUnsafeMutableBytes { recv(connection.fd, $0.baseAddress, $0.count, Int32(MSG_PEEK | MSG_DONTWAIT)) }
        if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return }
        guard count > 0 else { remove(connection); return }
        guard let newline = peek[0..<count].firstIndex(of: UInt8(ascii: "\n")) else {
            if count == peek.count { remove(connection) }  // no such line is this long
            return
        }
        var line = [UInt8](repeating: 0, count: newline + 1)
        _ = line.withUnsafeMutableBytes { recv(connection.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        let text = String(decoding: line.dropLast(), as: UTF8.self)
        let words = text.split(separator: " ", omittingEmptySubsequences: true)
        guard words.count == 2, words[0] == "CONNECT", let port = UInt32(words[1]) else {
            remove(connection)
            return
        }
        connection.peerPort = port
        connection.localPort = allocateLocalPort(peer: port)
        byKey[connection.key] = connection.id
        connection.state = .awaitingDriver
        issueRequests()
    }

    private func allocateLocalPort(peer: UInt32) -> UInt32 {
        while true {
            let port = nextLocalPort
            nextLocalPort = nextLocalPort == UInt32.max ? VirtioVsock.firstLocalPort : nextLocalPort + 1
            if byKey[Key(local: port, peer: peer)] == nil { return port }
        }
    }

    /// REQUESTs for host clients that waited for a running driver.
    private func issueRequests() {
        guard active else { return }
        for connection in connections.values where connection.state == .awaitingDriver {
            connection.state = .requesting
            enqueue(Control(op: .request, localPort: connection.localPort, peerPort: connection.peerPort,
                            connection: connection.id))
        }
    }

    /// Writes buffered guest data to the host socket; sends a credit update when enough was forwarded.
    private func flushToHost(_ connection: Connection) {
        while connection.pendingBytes > 0 {
            let count = connection.pending.withUnsafeBytes { raw in
                send(connection.fd, raw.baseAddress! + connection.pendingSent, connection.pendingBytes,
                     Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
            }
            if count > 0 {
                connection.pendingSent += count
                connection.forwarded &+= UInt32(count)
                continue
            }
            if count < 0 && errno == EINTR { continue }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { break }
            // The host peer is gone.
            queueReset(connection)
            remove(connection)
            return
        }
        if connection.pendingBytes == 0 {
            connection.pending = []
            connection.pendingSent = 0
        }
        afterForwarding(connection)
    }

    private func afterForwarding(_ connection: Connection) {
        guard connections[connection.id] != nil else { return }
        if connection.pendingBytes == 0 && connection.guestStopsSending {
            if connection.hostEOF || connection.guestStopsReceiving {
                // Both directions are finished: close, and tell the guest it may forget the connection.
                queueReset(connection)
                remove(connection)
                return
            }
            shutdown(connection.fd, Int32(SHUT_WR))
        }
        if connection.forwarded &- connection.advertisedForward >= VirtioVsock.bufferSize / 4 {
            enqueue(Control(op: .creditUpdate, localPort: connection.localPort, peerPort: connection.peerPort,
                            connection: connection.id))
        }
    }

    private func markReady(_ connection: Connection) {
        guard connection.state == .established, readySet.insert(connection.id).inserted else { return }
        ready.append(connection.id)
    }

    // MARK: guest → host (transmit queue)

    private func transmit(_ activation: VirtioActivation) throws(VirtioError) {
        guard let queue = activation.queue(VirtioVsock.transmitQueue) else { return }
        for _ in 0..<VirtioVsock.batchLimit {
            guard let chain = try queue.popAvailable() else { return }
            guard chain.readableLength >= VsockHeader.size else {
                throw .malformedRequest("vsock packet of \(chain.readableLength) bytes has no header")
            }
            // Copied out onto the stack; bytes a guest took away since the pop read as zero.
            var wire = VsockHeader.emptyWire
            try withUnsafeMutableBytes(of: &wire) { (raw) throws(VirtioError) in
                _ = try chain.read(from: activation.memory, offset: 0, into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<VsockHeader.size]))
            }
            let header = withUnsafeBytes(of: &wire) { VsockHeader(wire: $0) }
            try handle(header, chain: chain, memory: activation.memory)
            try queue.addUsed(head: chain.head, length: 0)
        }
        kick.signal()
    }

    private func handle(_ header: VsockHeader, chain: DescriptorChain, memory: GuestMemory) throws(VirtioError) {
        let payloadLength = Int(header.length)
        guard header.sourceCID == guestCID, payloadLength <= chain.readableLength - VsockHeader.size, payloadLength <= VirtioVsock.maxPayload else {
            // Not from this guest, or lying about its length: no reply at all.
            counters.withLock { $0.dropped += 1 }
            return
        }
        let key = Key(local: header.destinationPort, peer: header.sourcePort)
        let connection = byKey[key].flatMap { connections[$0] }
        guard header.type == VsockHeader.typeStream, header.destinationCID == VirtioVsock.hostCID,
              let operation = header.operation, operation != .invalid else {
            if header.operation != .reset { replyReset(to: header) }
            return
        }
        if operation == .request {
            if let connection {
                queueReset(connection)
                remove(connection)
            }
            openGuestConnection(header)
            return
        }
        guard let connection, connection.state == .established || connection.state == .requesting else {
            if operation != .reset { replyReset(to: header) }
            return
        }
        connection.peerBufferAllocation = header.bufferAllocation
        connection.peerForwardCount = header.forwardCount
        switch operation {
        case .response:
            guard connection.state == .requesting else {
                queueReset(connection)
                remove(connection)
                return
            }
            var reply = Array("OK \(connection.localPort)\n".utf8)
            let sent = reply.withUnsafeMutableBytes { send(connection.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
            guard sent == reply.count else {
                queueReset(connection)
                remove(connection)
                return
            }
            connection.state = .established
            counters.withLock { $0.hostInitiated += 1 }
            connection.hostReadable = true  // the client may have written right after its CONNECT line
            markReady(connection)
        case .reset:
            counters.withLock { $0.resetsReceived += 1 }
            remove(connection)
        case .readWrite:
            guard connection.state == .established else {
                queueReset(connection)
                remove(connection)
                return
            }
            try receiveFromGuest(connection, chain: chain, length: payloadLength, memory: memory)
        case .shutdown:
            guard connection.state == .established else {
                queueReset(connection)
                remove(connection)
                return
            }
            if header.flags & VsockHeader.shutdownSend != 0 { connection.guestStopsSending = true }
            if header.flags & VsockHeader.shutdownReceive != 0 {
                connection.guestStopsReceiving = true
                shutdown(connection.fd, Int32(SHUT_RD))
            }
            afterForwarding(connection)
        case .creditUpdate:
            if connection.hostReadable { markReady(connection) }
        case .creditRequest:
            guard !connection.creditUpdateQueued else {
                counters.withLock { $0.creditRequestsCoalesced += 1 }
                break
            }
            connection.creditUpdateQueued = enqueue(Control(op: .creditUpdate, localPort: connection.localPort,
                                                            peerPort: connection.peerPort, connection: connection.id))
        case .request, .invalid:
            break
        }
        if connection.hostReadable && connection.credit > 0 { markReady(connection) }
    }

    /// A guest REQUEST to host port P: connect to `<socketPath>_P`.
    private func openGuestConnection(_ header: VsockHeader) {
        guard connections.count < VirtioVsock.maxConnections,
              let fd = connectHost("\(socketPath)_\(header.destinationPort)") else {
            replyReset(to: header)
            return
        }
        let connection = add(fd: fd, hostInitiated: false, state: .established)
        connection.localPort = header.destinationPort
        connection.peerPort = header.sourcePort
        connection.peerBufferAllocation = header.bufferAllocation
        connection.peerForwardCount = header.forwardCount
        byKey[connection.key] = connection.id
        counters.withLock { $0.guestInitiated += 1 }
        enqueue(Control(op: .response, localPort: connection.localPort, peerPort: connection.peerPort,
                        connection: connection.id))
    }

    /// RW payload: straight from guest memory to the host socket; what it does not take is buffered.
    private func receiveFromGuest(_ connection: Connection, chain: DescriptorChain, length: Int,
                                  memory: GuestMemory) throws(VirtioError) {
        guard length > 0 else { return }
        guard !connection.guestStopsSending, connection.pendingBytes + length <= Int(VirtioVsock.bufferSize) else {
            // Data after SHUTDOWN(SEND), or more than the credit we gave: the guest broke the protocol.
            queueReset(connection)
            remove(connection)
            return
        }
        counters.withLock { $0.bytesFromGuest += UInt64(length) }
        var written = 0
        if connection.pendingBytes == 0 {
            // Straight from guest memory; pieces past `vectors` go the buffered way below.
            let gathered = try chain.gather(writable: false, from: VsockHeader.size, length: length, memory: memory, into: vectors)
            while true {
                var message = msghdr()
                message.msg_iov = vectors.baseAddress
                message.msg_iovlen = gathered.count
                let count = sendmsg(connection.fd, &message, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                if count < 0 && errno == EINTR { continue }
                if count < 0 && errno != EAGAIN && errno != EWOULDBLOCK {
                    queueReset(connection)
                    remove(connection)
                    return
                }
                written = max(count, 0)
                break
            }
            connection.forwarded &+= UInt32(written)
        }
        if written < length {
            let rest = try chain.readBytes(from: memory, offset: VsockHeader.size + written, count: length - written)
            // Drop what was already sent once it is half the buffer, so `pending` stays within
            // twice the credit we give instead of growing while the host drains it slowly.
            if connection.pendingSent > 0 && connection.pendingSent * 2 >= connection.pending.count {
                connection.pending.removeFirst(connection.pendingSent)
                connection.pendingSent = 0
            }
            connection.pending += rest
        }
        afterForwarding(connection)
    }

    // MARK: host → guest (receive queue)

    /// Queues a control packet unless `maxQueuedControl` already wait (the guest posts no receive
    /// buffers yet keeps asking): then it is dropped and counted, so memory stays bounded.
    @discardableResult
    func enqueue(_ packet: Control) -> Bool {
        guard control.count - controlStart < VirtioVsock.maxQueuedControl else {
            counters.withLock { $0.controlDropped += 1 }
            return false
        }
        if controlStart >= VirtioVsock.maxQueuedControl {
            // Never fully drained (one buffer at a time): drop the delivered prefix.
            control.removeFirst(controlStart)
            controlStart = 0
        }
        control.append(packet)
        return true
    }

    /// Control packets waiting for receive buffers (bounded by `maxQueuedControl`).
    var queuedControlPackets: Int { control.count - controlStart }

    private func queueReset(_ connection: Connection) {
        enqueue(Control(op: .reset, localPort: connection.localPort, peerPort: connection.peerPort))
    }

    private func replyReset(to header: VsockHeader) {
        enqueue(Control(op: .reset, localPort: header.destinationPort, peerPort: header.sourcePort))
    }

    private func header(_ op: VsockHeader.Operation, local: UInt32, peer: UInt32, connection: Connection?,
                        length: Int = 0, flags: UInt32 = 0) -> VsockHeader {
        var header = VsockHeader(op: op, sourceCID: VirtioVsock.hostCID, destinationCID: guestCID,
                                 sourcePort: local, destinationPort: peer, length: UInt32(length), flags: flags)
        if let connection {
            header.bufferAllocation = VirtioVsock.bufferSize
            header.forwardCount = connection.forwarded
            connection.advertisedForward = connection.forwarded
        }
        return header
    }

    private func nextChain(_ queue: VirtQueue) throws(VirtioError) -> DescriptorChain? {
        if let held = heldChain {
            heldChain = nil
            return held
        }
        guard let chain = try queue.popAvailable() else {
            counters.withLock { $0.receiveWaits += 1 }
            return nil
        }
        guard chain.writableLength >= VsockHeader.size else {
            throw .malformedRequest("vsock receive buffer of \(chain.writableLength) bytes cannot hold a header")
        }
        return chain
    }

    /// Puts `header`'s wire form at the start of the chain's writable part, from the stack.
    private func writeHeader(_ header: VsockHeader, to chain: DescriptorChain, memory: GuestMemory) throws(VirtioError) {
        var wire = VsockHeader.emptyWire
        try withUnsafeMutableBytes(of: &wire) { (raw) throws(VirtioError) in
            header.store(into: raw)
            _ = try chain.write(to: memory, offset: 0, from: UnsafeRawBufferPointer(rebasing: raw[0..<VsockHeader.size]))
        }
    }

    /// Fills receive buffers: control packets first, then data from connections with credit.
    private func deliver(_ activation: VirtioActivation) throws(VirtioError) {
        guard let queue = activation.queue(VirtioVsock.receiveQueue) else { return }
        var budget = VirtioVsock.batchLimit
        while budget > 0 {
            budget -= 1
            if controlStart < control.count {
                guard let chain = try nextChain(queue) else { return }
                let packet = control[controlStart]
                controlStart += 1
                if controlStart == control.count { control = []; controlStart = 0 }
                let connection = packet.connection.flatMap { connections[$0] }
                if packet.op == .creditUpdate { connection?.creditUpdateQueued = false }
                if packet.connection != nil && connection == nil && packet.op != .reset {
                    heldChain = chain  // its connection is gone meanwhile
                    continue
                }
                if packet.op == .reset { counters.withLock { $0.resetsSent += 1 } }
                try writeHeader(header(packet.op, local: packet.localPort, peer: packet.peerPort, connection: connection,
                                       flags: packet.flags), to: chain, memory: activation.memory)
                try queue.addUsed(head: chain.head, length: UInt32(VsockHeader.size))
                continue
            }
            guard let id = ready.first else { return }
            ready.removeFirst()
            readySet.remove(id)
            guard let connection = connections[id], connection.state == .established, connection.hostReadable,
                  !connection.hostEOF, !connection.guestStopsReceiving else { continue }
            let credit = Int(connection.credit)
            guard credit > 0 else { continue }  // a credit update from the guest brings it back
            guard let chain = try nextChain(queue) else {
                markReady(connection)
                return
            }
            let room = min(chain.writableLength - VsockHeader.size, credit, VirtioVsock.maxPayload)
            guard room > 0 else {
                heldChain = chain
                markReady(connection)
                return
            }
            // Straight into guest memory (as much of the buffer as `vectors` covers).
            let gathered = try chain.gather(writable: true, from: VsockHeader.size, length: room,
                                            memory: activation.memory, into: vectors)
            var count = 0
            repeat {
                count = readv(connection.fd, vectors.baseAddress, Int32(gathered.count))
            } while count < 0 && errno == EINTR
            if count > 0 {
                connection.sentToGuest &+= UInt32(count)
                counters.withLock { $0.bytesToGuest += UInt64(count) }
                try writeHeader(header(.readWrite, local: connection.localPort, peer: connection.peerPort,
                                       connection: connection, length: count), to: chain, memory: activation.memory)
                try queue.addUsed(head: chain.head, length: UInt32(VsockHeader.size + count))
                markReady(connection)
                continue
            }
            heldChain = chain
            if count == 0 {
                // The host peer will send no more: tell the guest (it answers with its own SHUTDOWN/RST).
                connection.hostEOF = true
                enqueue(Control(op: .shutdown, localPort: connection.localPort, peerPort: connection.peerPort,
                                flags: VsockHeader.shutdownSend, connection: connection.id))
                if connection.guestStopsSending && connection.pendingBytes == 0 {
                    queueReset(connection)
                    remove(connection)
                }
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                connection.hostReadable = false
            } else {
                queueReset(connection)
                remove(connection)
            }
        }
        kick.signal()  // budget spent with work left: continue after other work
    }
}
